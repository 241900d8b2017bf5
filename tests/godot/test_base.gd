## Base for the GDScript tests that tests/godot_runner.py runs in Godot 4.6.
## A test script extends "res://tests/test_base.gd" and implements run_tests() (it may await).
## The base counts checks, prints the "<passed> passed, <failed> failed" line the runner parses
## and quits with the exit code the runner reports (0 only with no failures and some passes).
extends Node

const ARGS_PATH := "res://args.json"
const SHOW_MAX := 200

var passed := 0
var failed := 0


func _ready() -> void:
	await run_tests()
	finish()


## Overridden by each test script (declare it as `func run_tests() -> void:`).
func run_tests() -> void:
	pass


func check(cond: bool, what: String) -> void:
	if cond:
		passed += 1
	else:
		failed += 1
		print("FAIL ", what)


## Equal by ==; floats (and int against float) within is_equal_approx. Values of unrelated
## types are unequal rather than a runtime error, so a wrong type fails one check, not the run.
func eq(want: Variant, got: Variant, what: String) -> void:
	if _same(want, got):
		passed += 1
	else:
		failed += 1
		print("FAIL %s: expected %s, got %s" % [what, _show(want), _show(got)])


## The run's arguments (run_godot(args=...)), or {} when the run has none.
func args() -> Dictionary:
	if not FileAccess.file_exists(ARGS_PATH):
		return {}
	var parsed: Variant = JSON.parse_string(read_text(ARGS_PATH))
	if parsed is Dictionary:
		return parsed
	check(false, "%s holds a JSON object" % ARGS_PATH)
	return {}


## A file's bytes; a file that cannot be read counts as a failed check.
func read_bytes(res_path: String) -> PackedByteArray:
	var data := FileAccess.get_file_as_bytes(res_path)
	_check_read(res_path)
	return data


## A file's text (UTF-8); a file that cannot be read counts as a failed check.
func read_text(res_path: String) -> String:
	var text := FileAccess.get_file_as_string(res_path)
	_check_read(res_path)
	return text


## Awaits [param cond] one process frame at a time; after [param limit_ms] (default
## [method wait_limit_ms]) it fails a check naming [param what] and returns false.
func _wait(cond: Callable, what: String, limit_ms: int = -1) -> bool:
	var limit := limit_ms if limit_ms >= 0 else wait_limit_ms()
	var t0 := Time.get_ticks_msec()
	while not cond.call():
		if Time.get_ticks_msec() - t0 > limit:
			check(false, "timed out waiting for " + what)
			return false
		await get_tree().process_frame
	return true


## How long [method _wait] waits by default; live tests against a CPU service override it.
func wait_limit_ms() -> int:
	return 10000


func finish() -> void:
	print("%d passed, %d failed" % [passed, failed])
	get_tree().quit(0 if failed == 0 and passed > 0 else 1)


func _check_read(res_path: String) -> void:
	var err := FileAccess.get_open_error()
	if err != OK:
		check(false, "read %s: %s" % [res_path, error_string(err)])


func _same(want: Variant, got: Variant) -> bool:
	var numbers := [TYPE_INT, TYPE_FLOAT]
	var texts := [TYPE_STRING, TYPE_STRING_NAME]
	var want_type := typeof(want)
	var got_type := typeof(got)
	if want_type in numbers and got_type in numbers:
		if want_type == TYPE_FLOAT or got_type == TYPE_FLOAT:
			return is_equal_approx(float(want), float(got))
		return want == got
	if want_type != got_type and not (want_type in texts and got_type in texts):
		return false
	return want == got


func _show(value: Variant) -> String:
	var text := str(value)
	if typeof(value) in [TYPE_STRING, TYPE_STRING_NAME]:
		text = '"%s"' % text
	if text.length() > SHOW_MAX:
		text = text.left(SHOW_MAX) + "... (%d chars)" % text.length()
	return text
