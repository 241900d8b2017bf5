## Harness self-test that must pass: cross-file class_name without preload, args.json, an extra
## binary file and a copied directory (byte-exact), an awaited frame, the base's eq() rules.
extends "res://tests/test_base.gd"


func run_tests() -> void:
	check(SelftestHelper.double(21) == 42, "static call on a class_name from another file")
	var child := SelftestChild.new()
	check(child is SelftestHelper, "class_name inheritance across files")
	eq("child", child.word, "subclass _init ran")

	var given := args()
	eq("hello", given.get("word"), "args.json string")
	eq(3, given.get("count"), "args.json number compares to int")

	var blob := read_bytes("res://data/blob.bin")
	eq(given.get("blob_size"), blob.size(), "blob size")
	eq(given.get("blob_hex"), blob.hex_encode(), "blob bytes")
	eq("nested text\n", read_text("res://fixtures/deep/er/a.txt"), "directory copied recursively")

	await get_tree().process_frame
	check(get_tree().get_frame() > 0, "await a frame")

	eq(0.3, 0.1 + 0.2, "floats compare approximately")
	eq(&"name", "name", "StringName equals String")
	check(not _same(1, "1"), "int and String are unequal, not an error")

	var classes := ProjectSettings.get_global_class_list()
	var names := classes.map(func(entry: Dictionary) -> String: return entry["class"])
	check(names.has("SelftestHelper") and names.has("SelftestChild"), "class cache loaded")
