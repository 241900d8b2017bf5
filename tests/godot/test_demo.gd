extends "res://tests/test_base.gd"
## The demo scene (godot_plugin/demo, passed as res://demo) loads with the addon, its nodes are
## wired, and its keys fire the director's events (queued on the client: no server here); P and T
## without a session change nothing. The README's GDScript examples (res://readme/*.gd) compile,
## and the one that builds nodes in code runs. Every script's .uid file holds a valid UID.
## args: {"snippets": [res paths], "run": [res path of the snippet to run]}

const P := preload("res://addons/shotstream/protocol.gd")


func run_tests() -> void:
	await _demo()
	await _readme_snippets()
	_uid_files()


## Every addon and demo script has a .uid file that Godot's ResourceUID reads as a valid UID.
func _uid_files() -> void:
	var count := 0
	for dir: String in ["res://addons/shotstream", "res://demo"]:
		for file in DirAccess.get_files_at(dir):
			if not file.ends_with(".gd"):
				continue
			count += 1
			var text := read_text("%s/%s.uid" % [dir, file]).strip_edges()
			var id := ResourceUID.text_to_id(text)
			check(id != ResourceUID.INVALID_ID, "%s.uid holds a UID: %s" % [file, text])
			eq(text, ResourceUID.id_to_text(id), "%s.uid round-trips through ResourceUID" % file)
	check(count >= 11, "every script checked (%d)" % count)


func _readme_snippets() -> void:
	var paths: Array = args().get("snippets", [])
	check(paths.size() >= 2, "README snippets given")
	for path: String in paths:
		var script: GDScript = load(path)
		check(script != null and script.can_instantiate(), "README snippet %s compiles" % path)
	for path: String in args().get("run", []):
		var node: Node = load(path).new()
		add_child(node)  # its _ready builds the nodes, and the client starts connecting
		var client: ShotStreamClient = null
		var director: ShotStreamDirector = null
		for child in node.get_children():
			if child is ShotStreamClient:
				client = child
			elif child is ShotStreamDirector:
				director = child
		check(client != null and director != null, "README snippet %s builds the nodes" % path)
		if client != null:
			client.log_errors = false  # no server here: quiet before the connect can fail
		await get_tree().process_frame
		if client != null:
			var queued := client.queued_messages()
			eq(1, queued.size(), "the README's fire() is queued for the session")
			if queued.size() == 1:
				eq(
					"The detective steps out of a taxi.",
					P.decode_client_text(queued[0])["message"]["prompt"],
					"README example prompt"
				)
			client.abort()
		node.queue_free()


func _demo() -> void:
	var scene: PackedScene = load("res://demo/demo.tscn")
	check(scene != null, "demo.tscn loads")
	if scene == null:
		return
	var demo: Control = scene.instantiate()
	var client: ShotStreamClient = demo.get_node("Client")
	var player: ShotStreamPlayer = demo.get_node("Player")
	var director: ShotStreamDirector = demo.get_node("Director")
	client.connect_on_ready = false  # no server in this test
	client.log_errors = false
	director.log_errors = false
	add_child(demo)
	await get_tree().process_frame
	check(client.player == player, "client -> player")
	check(player.target == demo.get_node("Screen"), "player -> screen")
	check(director.client == client, "director -> client")
	eq(
		PackedStringArray(["explore", "discover", "ambush", "calm"]),
		director.shot_map.event_names(),
		"the shot map's events"
	)
	eq(42, client.story_seed, "seed from the scene")
	for key: Key in [KEY_1, KEY_2, KEY_3, KEY_4]:
		var ev := InputEventKey.new()
		ev.keycode = key
		ev.pressed = true
		get_viewport().push_input(ev)
	await get_tree().process_frame
	var cues: Array[Dictionary] = []
	for text in client.queued_messages():
		cues.append(P.decode_client_text(text)["message"])
	eq(4, cues.size(), "four key presses, four cues queued for the session")
	if cues.size() == 4:
		eq(
			"A young knight in a blue cloak walks along a cliff path above a stormy sea.",
			cues[0]["prompt"],
			"explore prompt"
		)
		eq("Close-up: a glowing lantern half buried among wet rocks.", cues[1]["prompt"], "signal")
		eq(P.CueMode.CUT, cues[2]["mode"], "ambush cuts")
		eq(PackedStringArray(["combat", "ambush"]), cues[2]["tags"], "tags + event name")
		eq(3, cues[3]["num_chunks"], "calm is 3 chunks")
	check("1 explore" in demo.get_node("Status").text, "help text shown")
	eq("", demo.handle_key(KEY_Z), "unbound key")
	var errors: Array[String] = []
	client.error_received.connect(func(_c: int, m: String, _f: bool) -> void: errors.append(m))
	eq("pause", demo.handle_key(KEY_P), "P asks for a pause")
	check(not demo.is_paused(), "no session: not paused")
	eq("pause", demo.handle_key(KEY_P), "so P asks for a pause again")
	eq("take", demo.handle_key(KEY_T), "T asks for a take")
	check(not demo.is_recording(), "no session: not recording")
	eq(3, errors.size(), "each refusal reported: %s" % [errors])
	check("no open session" in demo.get_node("Status").text, "and shown")
	demo.queue_free()
