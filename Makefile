# robovid: `make run` (the service on ./demo with a simulated recorder) and `make test`.
# Both install what they need: the system FFmpeg libraries torchcodec loads, and a virtualenv.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_ROOT ?= demo

.PHONY: run test lint stress bench setup system-deps clean-demo

setup: system-deps $(VENV)/.installed

# torchcodec 0.13 loads FFmpeg's shared libraries (libavcodec & co.) from the system;
# systemd-analyze checks the unit files, strace traces the service's fsyncs in the tests and
# promtool (Debian's prometheus package, without its recommended daemons) checks the metrics and alert rules.
system-deps:
	@missing=""; \
	ldconfig -p | grep -q 'libavcodec\.so\.' || missing="$$missing ffmpeg"; \
	command -v ffprobe >/dev/null || missing="$$missing ffmpeg"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v strace >/dev/null || missing="$$missing strace"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[decode,dev]'
	touch $@

# The service on ./demo while a simulated recorder writes two cameras in real time. Ctrl-C stops both.
run: setup
	@mkdir -p $(DEMO_ROOT)
	@echo "robovid-watch on ./$(DEMO_ROOT); a simulated recorder writes 2 cameras x 6 episodes. Ctrl-C to stop."
	@echo "Afterwards: $(BIN)/robovid status $(DEMO_ROOT)   $(BIN)/robovid verify $(DEMO_ROOT)"
	@$(BIN)/robovid simulate $(DEMO_ROOT) --cameras front,wrist --episodes 6 --frames 150 \
	  --start-episode $$($(BIN)/python -c "import robovid.metadata as m; t=m.read_segments('$(DEMO_ROOT)'); print(max(t['episode_index'].to_pylist(), default=-1) + 1)") & \
	recorder=$$!; trap 'kill $$recorder 2>/dev/null; wait $$recorder' EXIT; \
	ROBOVID_ROOT=$(DEMO_ROOT) ROBOVID_MIN_FREE_MB=256 ROBOVID_LOG_FORMAT=console $(BIN)/robovid-watch

lint: setup
	$(BIN)/ruff check robovid daemon tests benchmarks
	$(BIN)/ruff format --check robovid daemon tests benchmarks
	$(BIN)/mypy robovid daemon

test: lint
	ROBOVID_REQUIRE_SYSTEM_TOOLS=$${CI:+1} $(BIN)/python -m pytest -q -m "not slow"

stress: setup
	ROBOVID_REQUIRE_SYSTEM_TOOLS=1 $(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python -m benchmarks.run_all

clean-demo:
	rm -rf $(DEMO_ROOT)
