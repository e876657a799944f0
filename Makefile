# The two commands of the README:
#   make demo   the whole stack on its embedded default (emulator upstream, a local Redis, two workers,
#               the front) and a short demo conversation
#   make test   the test suite (proto checks, then pytest against a real redis-server and the emulator)
.PHONY: demo test bootstrap proto dev

VENV := .venv/bin

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/livegate dev --demo --listen 127.0.0.1:0 --audio-out demo-reply.wav

dev: bootstrap
	$(VENV)/livegate dev

proto: bootstrap
	$(VENV)/python scripts/gen_proto.py

test: bootstrap
	bash scripts/check_proto.sh
	$(VENV)/python -m pytest -q
