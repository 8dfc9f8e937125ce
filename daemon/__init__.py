"""robovid-watch: the service that turns finished episode folders into chunk videos."""
