## Harness self-test that must fail: one passing and one failing check.
extends "res://tests/test_base.gd"


func run_tests() -> void:
	check(true, "this one passes")
	eq(2, 1 + 2, "deliberately wrong sum")
