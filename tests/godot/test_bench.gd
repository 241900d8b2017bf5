extends "res://tests/test_base.gd"
## A benchmark, not a timed test: main-thread milliseconds per chunk of the 1.3B model (12 frames of
## 832x480 RGBA8, 19.2 MB) on the way from the WebSocket to the screen. Prints "BENCH <name> <ms>"
## lines; the checks only make sure the frames that went on screen are the right ones, each once
## and in order. tests/test_godot_addon.py prints the numbers.
##
## Two parts:
## - live (with args "url" and "chunks"): a ShotStreamClient and its player against a gateway that
##   sends "chunks" chunks as fast as the credits allow (tests/test_godot_addon.py's scripted
##   gateway, "bench" scenario), in real game frames. Every frame times the client's poll (reading
##   the message, the decode, the push, the acks) and the player's present (the frame's copy and
##   its texture upload). The headline, <way>_max_frame_ms, is the largest of those frames over the
##   chunks' lives (each arrival frame and each frame that presents one of their frames), the
##   session's opening frame (which creates the texture) left out. Three sessions: "live_cold" (the
##   browser's WebSocket, the run's first session, which pays the warm-ups), "live_peer" (Godot's
##   WebSocketPeer, the way before: its get_packet is the real one) and "live" (the browser's
##   WebSocket, warm). Each checks that every frame went on screen once, in order, with its own
##   pixels, and that no frame handled more than one chunk.
## - synthetic: one chunk decoded and played in a loop, by reference and the way it was done before
##   that (a copy of the whole chunk out of the message, then a blit per frame), with get_packet
##   simulated by one memcpy (duplicate(); the real one costs far more: see live_peer); medians
##   over "reps".
## args: {"reps" (default 5), "width", "height", "frames", "url", "chunks" (default 8)}

const P := preload("res://addons/shotstream/protocol.gd")
const MARK := 0xF00D0000  # a frame's first 4 bytes: MARK + its arrival index

var _numbers: Dictionary = {}


func run_tests() -> void:
	if args().has("url"):
		var chunks: int = args().get("chunks", 8)
		# the first session of a run pays the warm-ups (script paths, allocations, the texture's
		# first uploads): reported on its own, then the WebSocketPeer way and the browser's, warm
		await _live(args()["url"], chunks, true, "live_cold")
		await _live(args()["url"], chunks, false, "live_peer")
		await _live(args()["url"], chunks, true, "live")
	await _synthetic()


# -- live ----------------------------------------------------------------------------------------


## [param browser]: the client's browser_socket (false: Godot's WebSocketPeer, as before).
## [param way] names the numbers.
func _live(url: String, chunks: int, browser: bool, way: String) -> void:
	var player := ShotStreamPlayer.new()
	player.playing = false  # presented below, timed
	add_child(player)
	var client := ShotStreamClient.new()
	client.server_url = url + "?s=bench"
	client.auto_poll = false  # polled below, timed
	client.connect_on_ready = false
	client.auto_reconnect = false
	client.player = player
	client.browser_socket = browser
	add_child(client)
	var arrived: Array[int] = []  # chunks received in the frame being timed
	client.chunk_received.connect(func(_c: Dictionary) -> void: arrived.append(0))
	var opened: Array[int] = []
	client.connected.connect(func(_s: Dictionary) -> void: opened.append(0))
	client.open_session()
	var frames_total := chunks * 12
	var poll_ms: Array[float] = []
	var present_ms: Array[float] = []
	var chunk_frames_ms: Array[float] = []  # every frame in a chunk's life
	var arrival_frames_ms: Array[float] = []
	var presenting_frames_ms: Array[float] = []  # frames that present and receive nothing
	var open_frame_ms := 0.0
	var crowded_frames := 0  # frames that received more than one chunk
	var shown: Array[int] = []
	var right := true
	var clock := 0.0
	var deadline := Time.get_ticks_msec() + 90000
	while shown.size() < frames_total and Time.get_ticks_msec() < deadline:
		await get_tree().process_frame
		clock += get_process_delta_time()
		arrived.clear()
		var was_open := opened.size()
		var t0 := Time.get_ticks_usec()
		client.poll()
		var t1 := Time.get_ticks_usec()
		var new_frame := player.present(clock)
		var t2 := Time.get_ticks_usec()
		var ms := (t2 - t0) / 1000.0
		if opened.size() != was_open:
			open_frame_ms = ms
			continue
		if new_frame:  # outside the timing: which frame is on screen
			shown.append(player.presented_frame_index)
			right = right and player.frame_image.get_data().decode_u32(0) == MARK + shown[-1]
		if arrived.size() > 1:
			crowded_frames += 1
		if arrived.is_empty() and not new_frame:
			continue
		poll_ms.append((t1 - t0) / 1000.0)
		present_ms.append((t2 - t1) / 1000.0)
		chunk_frames_ms.append(ms)
		if not arrived.is_empty():
			arrival_frames_ms.append(ms)
		else:
			presenting_frames_ms.append(ms)
	var in_order := true
	for i in shown.size():
		in_order = in_order and shown[i] == i
	check(
		shown.size() == frames_total,
		"%s: all %d frames shown (%d)" % [way, frames_total, shown.size()]
	)
	check(in_order, way + ": each frame shown once, in arrival order")
	check(right, way + ": each frame on screen holds its own pixels")
	eq(0, crowded_frames, way + ": no frame handles more than one chunk")
	await get_tree().process_frame
	client.poll()  # acks the last chunk, now that its last frame is up
	client.close()
	deadline = Time.get_ticks_msec() + 10000
	while client.state != ShotStreamClient.State.DISCONNECTED and Time.get_ticks_msec() < deadline:
		await get_tree().process_frame
		client.poll()
	print(
		(
			"BENCH_INFO %s: %d chunks, %d frames timed (%d arrivals), display %s, renderer %s"
			% [
				way,
				chunks,
				chunk_frames_ms.size(),
				arrival_frames_ms.size(),
				DisplayServer.get_name(),
				RenderingServer.get_video_adapter_name()
			]
		)
	)
	var over := chunk_frames_ms.filter(func(ms: float) -> bool: return ms > 5.0).size()
	print("BENCH %s_max_frame_ms (headline) %.2f" % [way, _max(chunk_frames_ms)])
	print("BENCH %s_frames_over_5_ms %d of %d" % [way, over, chunk_frames_ms.size()])
	print("BENCH %s_poll_ms max %.2f" % [way, _max(poll_ms)])
	print("BENCH %s_present_ms max %.2f" % [way, _max(present_ms)])
	print("BENCH %s_arrival_frame_ms median %.2f" % [way, _median(arrival_frames_ms)])
	print("BENCH %s_arrival_frame_ms max %.2f" % [way, _max(arrival_frames_ms)])
	print("BENCH %s_presenting_frame_ms median %.2f" % [way, _median(presenting_frames_ms)])
	print("BENCH %s_presenting_frame_ms max %.2f" % [way, _max(presenting_frames_ms)])
	print("BENCH %s_main_thread_ms_per_chunk %.2f" % [way, _sum(chunk_frames_ms) / chunks])
	print("BENCH %s_session_open_frame_ms (creates the texture) %.2f" % [way, open_frame_ms])
	client.free()
	player.free()


static func _max(values: Array[float]) -> float:
	var m := 0.0
	for v in values:
		m = maxf(m, v)
	return m


static func _sum(values: Array[float]) -> float:
	var s := 0.0
	for v in values:
		s += v
	return s


static func _median(values: Array[float]) -> float:
	if values.is_empty():
		return 0.0
	var sorted := values.duplicate()
	sorted.sort()
	return sorted[sorted.size() / 2]


# -- synthetic -----------------------------------------------------------------------------------


func _synthetic() -> void:
	var w: int = args().get("width", 832)
	var h: int = args().get("height", 480)
	var n: int = args().get("frames", 12)
	var reps: int = args().get("reps", 5)
	var frame_bytes := w * h * 4
	var chunk := P.default_message("FrameChunk")
	chunk["chunk_seq"] = 1
	chunk["event_id"] = "bench"
	chunk["num_frames"] = n
	chunk["width"] = w
	chunk["height"] = h
	chunk["frame_format"] = P.FrameFormat.RGBA8
	var pixels := PackedByteArray()
	pixels.resize(n * frame_bytes)
	for f in n:  # each frame's first bytes say which frame it is
		pixels.encode_u32(f * frame_bytes, MARK + f)
	chunk["pixels"] = pixels
	var message := P.encode_chunk_frame(chunk)
	print(
		(
			"BENCH_INFO synthetic: %dx%d x %d frames, %.1f MB per chunk, display %s, renderer %s"
			% [
				w,
				h,
				n,
				message.size() / 1e6,
				DisplayServer.get_name(),
				RenderingServer.get_video_adapter_name()
			]
		)
	)
	for rep in reps:
		_receive(message, rep)
		_now_path(message, n, frame_bytes, rep)
		_old_path(message, n, frame_bytes, rep)
		await get_tree().process_frame
	var medians := {}
	for key: String in _numbers:
		var values: Array = _numbers[key]
		values.sort()
		medians[key] = values[values.size() / 2]
		print("BENCH %s %.2f" % [key, medians[key]])
	# the frame a chunk arrives in: get_packet's copy, then the decode and the push
	for way: String in ["now", "old"]:
		var arrival := ""
		for key: String in medians:
			if key.begins_with(way + "_arrival_ms"):
				arrival = key
		var arrival_frame: float = medians["get_packet_copy_ms (both)"] + medians[arrival]
		print("BENCH %s_chunk_arrival_frame_ms %.2f" % [way, arrival_frame])
		var longest: float = maxf(arrival_frame, medians[way + "_longest_present_ms"])
		print("BENCH %s_max_frame_ms %.2f" % [way, longest])


func _add(key: String, usec: int) -> void:
	if not _numbers.has(key):
		_numbers[key] = []
	_numbers[key].append(usec / 1000.0)


## WebSocketPeer.get_packet() copies each message out of the socket's buffer: a memcpy of it.
func _receive(message: PackedByteArray, _rep: int) -> void:
	var t := Time.get_ticks_usec()
	var copy := message.duplicate()
	copy[0] = message[0]  # make sure the copy is real
	_add("get_packet_copy_ms (both)", Time.get_ticks_usec() - t)


func _now_path(message: PackedByteArray, n: int, frame_bytes: int, rep: int) -> void:
	var player := ShotStreamPlayer.new()
	player.playing = false
	add_child(player)
	var header: Dictionary = P.decode_server_binary(message, false)["message"]
	player.configure(header["width"], header["height"], 16.0, 64, 1)  # as opened does, once
	var t := Time.get_ticks_usec()
	var decoded: Dictionary = P.decode_server_binary(message, false)["message"]
	var accepted := player.push_chunk(decoded, 0.0)
	var arrival := Time.get_ticks_usec() - t
	_add("now_arrival_ms (decode by reference + push)", arrival)
	var shown := _show_frames(player, n)
	var right: bool = accepted == n and shown[1]
	_add("now_per_frame_ms (copy + upload)", shown[0] / n)
	_add("now_longest_present_ms", shown[2])
	_add("now_main_thread_ms_per_chunk", arrival + shown[0])
	if rep == 0:
		check(right, "now: each frame on screen is the right one")
		eq(frame_bytes, player.frame_image.get_data().size(), "now: a whole frame")
	player.free()


## Presents the chunk's n frames, one per call.
## Returns [microseconds spent, every frame the right one, the longest call's microseconds].
func _show_frames(player: ShotStreamPlayer, n: int) -> Array:
	var usec := 0
	var longest := 0
	var right := true
	for f in n:
		var t := Time.get_ticks_usec()
		player.present(1.0 + f / 16.0)
		var took := Time.get_ticks_usec() - t
		usec += took
		longest = maxi(longest, took)
		right = right and player.frame_image.get_data().decode_u32(0) == MARK + f
	return [usec, right, longest]


func _old_path(message: PackedByteArray, n: int, _frame_bytes: int, rep: int) -> void:
	var player := ShotStreamPlayer.new()
	player.playing = false
	add_child(player)
	var header: Dictionary = P.decode_server_binary(message, false)["message"]
	player.configure(header["width"], header["height"], 16.0, 64, 1)
	var t := Time.get_ticks_usec()
	var decoded: Dictionary = P.decode_server_binary(message)["message"]  # slices the pixels out
	var w: int = decoded["width"]
	var h: int = decoded["height"]
	var image := Image.create_from_data(w, h * n, false, Image.FORMAT_RGBA8, decoded["pixels"])
	var accepted := player.push_image(image, n, 0.0)
	var arrival := Time.get_ticks_usec() - t
	_add("old_arrival_ms (decode with a copy + push)", arrival)
	var shown := _show_frames(player, n)
	var right: bool = accepted == n and shown[1]
	_add("old_per_frame_ms (blit + upload)", shown[0] / n)
	_add("old_longest_present_ms", shown[2])
	_add("old_main_thread_ms_per_chunk", arrival + shown[0])
	if rep == 0:
		check(right, "old: each frame on screen is the right one")
	player.free()
