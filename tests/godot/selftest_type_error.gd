## Harness self-test with a type error gdtoolkit cannot see; Godot's analyzer reports it and idles.
extends "res://tests/test_base.gd"


func run_tests() -> void:
	var count: int = "not a number"
	check(count == 0, "never reached")
