extends "res://tests/test_base.gd"
## The demo scene (godot_plugin/demo, passed as res://demo) loads with the addon, its nodes are
## wired, and its keys fire the director's events (queued on the client: no server here). The
## README's GDScript examples (res://readme/*.gd) compile, and the one that builds nodes in code
## runs. args: {"snippets": [res paths], "run": [res path of the snippet to run]}

const P := preload("res://addons/shotstream/protocol.gd")


func run_tests() -> void:
	await _demo()
	await _readme_snippets()


func _readme_snippets() -> void:
	var paths: Array = args().get("snippets", [])
	check(paths.size() >= 2, "README snippets given")
	for path: String in paths:
		var script: GDScript = load(path)
		check(script != null and script.can_instantiate(), "README snippet %s compiles" % path)
	for path: String in args().get("run", []):
		var node: Node = load(path).new()
		add_child(node)
		await get_tree().process_frame
		var client: ShotStreamClient = null
		var director: ShotStreamDirector = null
		for child in node.get_children():
			if child is ShotStreamClient:
				client = child
			elif child is ShotStreamDirector:
				director = child
		check(client != null and director != null, "README snippet %s builds the nodes" % path)
		if client != null:
			client.log_errors = false
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
	demo.queue_free()
