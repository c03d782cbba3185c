"""The benchmarks of SPEC §9, run as `python -m bench` (or `nox -s bench`).

Every figure is a ratio against a limit measured in the same run on the same machine (pgbench, raw
aiosmtplib, a fixed budget); absolute times stand beside them for context only. Everything the
harness starts listens on 127.0.0.1 and stops by itself; every load loop is bounded in count and
in time.
"""
