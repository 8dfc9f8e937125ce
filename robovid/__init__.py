"""robovid: PNG episodes to chunked video and back."""
