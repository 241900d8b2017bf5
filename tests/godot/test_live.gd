extends "res://tests/test_base.gd"
## A live session against the real service (tiny engine) over the WebSocket gateway on loopback,
## through ShotStreamClient + ShotStreamPlayer, then the editor dock against the same server (a
## bad seed is refused, and moving the dock keeps its session).
##
## Story (the Python test replays it with the SDK and compares): caption "A lighthouse on a
## stormy coast.", seed 5, 1 chunk in flight; cue "walk" (3 chunks); when "walk" starts, a CUT cue
## "boom" (2 chunks), which lands after walk's first chunk; close after the second shot finishes.
## Prints "CHUNK <seq> <eventId> <sha256 of the pixels> <bytes>" per chunk and
## "FINISHED <eventId> <chunks> <frames> <cut>" per shot.
## Then the demo's cutscene live (explore, a gameplay event, an ambush that cuts in, calm), with
## generation paused until the ambush is cued so that its cut always drops explore and discover:
## every frame shown once in order, the shots ending on screen in order and in full.
## args: {"url": gateway URL, "take": bool (the server records takes), "stats": bool (the server
## sends Stats after every chunk)}

const P := preload("res://addons/shotstream/protocol.gd")
const DockScript := preload("res://addons/shotstream/dock.gd")
const TIMEOUT_MS := 150000

var _events: Array[String] = []


func run_tests() -> void:
	var url: String = args().get("url", "")
	check(url.begins_with("ws://"), "gateway URL given")
	await _live(url, bool(args().get("take", false)))
	await _demo_cutscene(url)
	await _dock(url, bool(args().get("take", false)))


func _sha256(data: PackedByteArray) -> String:
	var ctx := HashingContext.new()
	ctx.start(HashingContext.HASH_SHA256)
	ctx.update(data)
	return ctx.finish().hex_encode()


func wait_limit_ms() -> int:
	return TIMEOUT_MS


func _live(url: String, record: bool) -> void:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.auto_reconnect = false
	client.server_url = url
	client.global_caption = "A lighthouse on a stormy coast."
	client.story_seed = 5
	client.max_chunks_in_flight = 1
	client.client_name = "godot/LiveTest"
	var player := ShotStreamPlayer.new()
	client.player = player
	add_child(player)
	add_child(client)
	var state := {
		"cut_sent": false,
		"finished": 0,
		"done": false,
		"last_pixels": PackedByteArray(),
		"take": {},
		"latency": [],
		"stats": 0,
	}
	client.connected.connect(
		func(s: Dictionary) -> void:
			print(
				(
					"OPENED %dx%d %s"
					% [s["width"], s["height"], P.enum_name("FrameFormat", s["frame_format"])]
				)
			)
			if record:
				client.start_take("godot-live")
	)
	client.shot_started.connect(
		func(shot: Dictionary) -> void:
			print("STARTED %s %d" % [shot["event_id"], shot["num_chunks"]])
			if shot["event_id"] == "walk" and not state["cut_sent"]:
				state["cut_sent"] = true
				eq("boom", client.cue("A wave hits the rocks.", "boom", 2, "cut"), "cut cue sent")
	)
	client.chunk_received.connect(
		func(c: Dictionary) -> void:
			check(c.get("pixels_offset", 0) > 0, "the client hands over the message: no copy")
			var pixels := P.chunk_pixels(c)
			check(pixels.size() == P.expected_pixel_bytes(c), "chunk carries its pixels")
			print(
				(
					"CHUNK %s %s %s %d"
					% [
						P.u64_to_string(c["chunk_seq"]),
						c["event_id"],
						_sha256(pixels),
						pixels.size()
					]
				)
			)
			state["last_pixels"] = pixels
	)
	var on_screen: Array[String] = []
	player.shot_presented.connect(
		func(shot: Dictionary) -> void:
			on_screen.append("presented %s %d" % [shot["event_id"], shot["frame_index"]])
	)
	player.shot_ended.connect(
		func(shot: Dictionary) -> void:
			on_screen.append(
				(
					"ended %s %d cut=%s complete=%s @%d"
					% [
						shot["event_id"],
						shot["frames"],
						shot["cut"],
						shot["complete"],
						player.presented_frame_index
					]
				)
			)
	)
	client.shot_finished.connect(
		func(f: Dictionary) -> void:
			# a shot's last chunk comes with (or just after) its ShotFinished: the end on screen
			# follows, once the frames have played (a cut shot's frames may all be shown already:
			# it ends on screen with the message itself)
			var ended := on_screen.any(
				func(e: String) -> bool: return e.begins_with("ended %s " % f["event_id"])
			)
			check(
				f["cut"] or not ended, "%s: ShotFinished before its end on screen" % f["event_id"]
			)
			print("FINISHED %s %d %d %s" % [f["event_id"], f["chunks"], f["frames"], f["cut"]])
			state["finished"] += 1
			if state["finished"] == 2:
				if record:
					client.stop_take()
				else:
					client.close()
	)
	client.take_started.connect(
		func(take_name: String, path: String) -> void:
			print("TAKE_STARTED %s %s" % [take_name, path])
	)
	client.take_saved.connect(
		func(t: Dictionary) -> void:
			print(
				(
					"TAKE_SAVED %s %d %s %s"
					% [t["name"], t["frames"], P.u64_to_string(t["bytes"]), t["path"]]
				)
			)
			state["take"] = t
			client.close()
	)
	client.cue_latency.connect(
		func(id: String, ms: float) -> void: state["latency"].append("%s %.0f" % [id, ms])
	)
	client.stats_received.connect(func(_s: Dictionary) -> void: state["stats"] += 1)
	client.error_received.connect(
		func(code: int, message: String, fatal: bool) -> void:
			print("ERROR %d %s %s" % [code, message, fatal])
			check(false, "no error expected: %d %s" % [code, message])
	)
	client.disconnected.connect(
		func(reason: String) -> void:
			print("CLOSED " + reason)
			state["done"] = true
	)
	# queued now, sent as soon as the session opens (after start_take, which `connected` sends)
	eq("walk", client.cue("The keeper climbs the stairs.", "walk", 3, "wait"), "first cue queued")
	eq(OK, client.open_session(), "open_session")
	await _wait(func() -> bool: return state["done"], "the live session to end")
	eq(2, state["finished"], "two shots finished")
	eq(ShotStreamClient.State.DISCONNECTED, client.state, "disconnected after close")
	eq(2, state["latency"].size(), "a cue latency for each shot: %s" % [state["latency"]])
	if args().get("stats", false):
		check(state["stats"] > 0, "stats received")
	if record:
		eq("godot-live", state["take"].get("name"), "take saved")
	# the player plays everything out at 16 fps; its image then holds the last frame
	await _wait(
		func() -> bool: return player.presented_frame_index == player.pushed_frames - 1,
		"the player to present every frame",
		10000
	)
	eq(9 + 9 + 12, player.pushed_frames, "the player got every frame")
	# on screen: walk (cut after its first chunk: 9 frames), then boom (2 chunks: 21 frames), each
	# ended when its last frame went up
	eq(
		[
			"presented walk 0",
			"ended walk 9 cut=true complete=false @8",
			"presented boom 9",
			"ended boom 21 cut=false complete=true @29"
		],
		on_screen,
		"on-screen shot events"
	)
	var last: PackedByteArray = state["last_pixels"]
	var frame_bytes := player.width * player.height * 4
	eq(
		_sha256(last.slice(last.size() - frame_bytes)),
		_sha256(player.frame_image.get_data()),
		"the texture shows the last frame"
	)
	print("PRESENTED %d %d" % [player.presented_frame_index + 1, player.jitter.underruns])
	client.queue_free()
	player.queue_free()


func _demo_cutscene(url: String) -> void:
	var demo: Control = load("res://demo/demo.tscn").instantiate()
	var client: ShotStreamClient = demo.get_node("Client")
	var player: ShotStreamPlayer = demo.get_node("Player")
	var director: ShotStreamDirector = demo.get_node("Director")
	client.connect_on_ready = false
	client.auto_reconnect = false
	client.server_url = url
	add_child(demo)
	var shown: Array[int] = []
	player.frame_presented.connect(func(i: int) -> void: shown.append(i))
	var ended: Array[String] = []
	var indices: Array[int] = []
	player.shot_ended.connect(
		func(shot: Dictionary) -> void:
			ended.append(
				"%s %d%s" % [shot["event_id"], shot["frames"], " cut" if shot["cut"] else ""]
			)
			indices.append(shot["shot_index"])
	)
	var dropped: Array[String] = []
	director.shot_dropped.connect(
		func(_e: String, id: String, reason: String) -> void:
			dropped.append("%s: %s" % [id, reason])
	)
	client.error_received.connect(
		func(code: int, message: String, _fatal: bool) -> void:
			check(false, "cutscene: no error expected: %d %s" % [code, message])
	)
	client.open_session()
	if not await _wait(func() -> bool: return client.is_session_open(), "the demo to connect"):
		demo.queue_free()
		return
	# Generation is paused until the ambush is cued, so its cut meets explore and discover still
	# queued, whatever the machine's speed: the cut drops both (the server plays cues in order).
	client.pause()
	var cutscene_player: ShotStreamCutscenePlayer = demo.get_node("CutscenePlayer")
	cutscene_player.shot_cued.connect(
		func(index: int, _id: String) -> void:
			if index == 1:
				client.resume()
	)
	var results: Array[Dictionary] = await demo.play_cutscene()
	await get_tree().process_frame  # play() returned inside the last shot_ended: let it finish
	var summary: Array[String] = []
	for r: Dictionary in results:
		summary.append("%s:%s" % [r.get("event_name"), r.get("error")])
	print("CUTSCENE %s | on screen: %s | dropped: %s" % [summary, ended, dropped])
	eq(
		["explore:dropped by a cut", "ambush:", "calm:"],
		summary,
		"cutscene: the ambush cut explore (and the gameplay's discover); it and calm played"
	)
	eq(["explore-1: dropped by a cut", "discover-2: dropped by a cut"], dropped, "cutscene: cut")
	eq(["ambush-3 9", "calm-4 33"], ended, "cutscene: on screen, each in full")
	var want: Array[int] = []
	for i in player.pushed_frames:
		want.append(i)
	eq(want, shown, "cutscene: every frame on screen exactly once, in order")
	var sorted := indices.duplicate()
	sorted.sort()
	eq(sorted, indices, "cutscene: shots ended on screen in their order")
	var closed := [false]
	client.disconnected.connect(func(_r: String) -> void: closed[0] = true)
	client.close()
	await _wait(func() -> bool: return closed[0], "the demo to disconnect")
	demo.queue_free()


func _dock(url: String, record: bool) -> void:
	var dock: DockScript = DockScript.new()
	add_child(dock)
	eq("Connect", dock.connect_button.text, "dock starts disconnected")
	check(dock.cue_button.disabled, "cue disabled while disconnected")
	dock.url_edit.text = url
	dock.caption_edit.text = "A quiet harbour at dawn."
	dock.seed_edit.text = "not a number"
	dock.toggle_connection()
	check(
		dock.error_label.text.begins_with("Seed:"),
		"a bad seed is refused: " + dock.error_label.text
	)
	eq(ShotStreamClient.State.DISCONNECTED, dock.client.state, "and nothing connects")
	dock.seed_edit.text = "3"
	dock.toggle_connection()
	if not await _wait(func() -> bool: return dock.client.is_session_open(), "the dock to connect"):
		dock.queue_free()
		return
	check(dock.status_label.text.begins_with("Open:"), "status: " + dock.status_label.text)
	eq(P.Decoder.UNSPECIFIED, dock.client.decoder, "the dock asks for the server's decoder")
	var slot := Node.new()  # the editor moves a dock by taking it out of the tree and back
	add_child(slot)
	dock.reparent(slot)
	await get_tree().process_frame
	check(dock.client.is_session_open(), "the dock's session survives a move")
	check(not dock.cue_button.disabled, "cue enabled when open")
	eq("Disconnect", dock.connect_button.text, "connect button toggles")
	if record:
		dock.take_edit.text = "dock-take"
		dock.start_take()
		await _wait(
			func() -> bool: return dock.take_label.text.begins_with("Recording"), "take start"
		)
	dock.prompt_edit.text = "Gulls circle the masts."
	dock.chunks_spin.value = 1
	check(dock.send_prompt(false) != "", "dock cue sent")
	await _wait(
		func() -> bool: return dock.player.presented_frame_index >= 0,
		"the dock preview's first frame"
	)
	check(dock.preview.texture == dock.player.texture, "the preview shows the player's texture")
	check("ms" in dock.latency_label.text, "latency shown: " + dock.latency_label.text)
	if args().get("stats", false):
		await _wait(func() -> bool: return dock.stats_label.text.begins_with("GPU"), "dock stats")
	if record:
		dock.stop_take()
		await _wait(func() -> bool: return dock.take_label.text.begins_with("Saved"), "take saved")
		check("dock-take" in dock.take_label.text, "saved path shown: " + dock.take_label.text)
	dock.toggle_connection()
	await _wait(
		func() -> bool: return dock.client.state == ShotStreamClient.State.DISCONNECTED,
		"the dock to disconnect"
	)
	eq("", dock.error_label.text, "no error in the dock")
	print("DOCK " + dock.take_label.text.replace("\n", " "))
	slot.queue_free()
