## Harness self-test: an integer division by zero traps the wasm engine (a JavaScript error).
extends "res://tests/test_base.gd"


func run_tests() -> void:
	var zero: int = args().get("zero", 0)
	print("quotient ", 1 / zero)
	check(false, "never reached")
