## Harness self-test: every check passes, but the script prints three errors to stderr: its own
## push_error and push_warning, and an engine error (an out-of-range read). The runner must fail
## the run unless the test declares each of them expected.
extends "res://tests/test_base.gd"


func run_tests() -> void:
	push_error("selftest: deliberate error")
	push_warning("selftest: deliberate warning")
	var empty := PackedByteArray()
	eq(0, empty.decode_u32(8), "an out-of-range read gives 0 (and an engine error)")
