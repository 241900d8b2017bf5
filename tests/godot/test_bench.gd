extends "res://tests/test_base.gd"
## A benchmark, not a timed test: main-thread milliseconds per chunk of the 1.3B model (12 frames of
## 832x480 RGBA8, 19.2 MB) on the way from the WebSocket to the screen, the way the addon does it
## now and the way it did before (a copy of the whole chunk out of the message, then a blit per
## frame). Prints "BENCH <name> <ms>" lines (medians over the reps); the checks only make sure the
## frames that went on screen are the right ones. tests/test_godot_addon.py prints the numbers.
## args: {"reps": repetitions (default 5), "width", "height", "frames"}

const P := preload("res://addons/shotstream/protocol.gd")

var _numbers: Dictionary = {}


func run_tests() -> void:
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
		pixels.encode_u32(f * frame_bytes, 0xF00D0000 + f)
	chunk["pixels"] = pixels
	var message := P.encode_chunk_frame(chunk)
	print(
		(
			"BENCH_INFO %dx%d x %d frames, %.1f MB per chunk, display %s, renderer %s"
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
		print(
			(
				"BENCH %s_chunk_arrival_frame_ms %.2f"
				% [way, medians["get_packet_copy_ms (both)"] + medians[arrival]]
			)
		)


func _add(key: String, usec: int) -> void:
	if not _numbers.has(key):
		_numbers[key] = []
	_numbers[key].append(usec / 1000.0)


## WebSocketPeer.get_packet() copies each message out of the socket's buffer: the same memcpy.
func _receive(message: PackedByteArray, _rep: int) -> void:
	var t := Time.get_ticks_usec()
	var copy := message.duplicate()
	copy[0] = message[0]  # make sure the copy is real
	_add("get_packet_copy_ms (both)", Time.get_ticks_usec() - t)


func _now_path(message: PackedByteArray, n: int, frame_bytes: int, rep: int) -> void:
	var player := ShotStreamPlayer.new()
	player.playing = false
	add_child(player)
	var t := Time.get_ticks_usec()
	var decoded: Dictionary = P.decode_server_binary(message, false)["message"]
	var accepted := player.push_chunk(decoded, 0.0)
	var arrival := Time.get_ticks_usec() - t
	_add("now_arrival_ms (decode by reference + push)", arrival)
	var shown := _show_frames(player, n)
	var frames_usec: int = shown[0]
	var right: bool = accepted == n and shown[1]
	_add("now_per_frame_ms (copy + upload)", frames_usec / n)
	_add("now_main_thread_ms_per_chunk", arrival + frames_usec)
	if rep == 0:
		check(right, "now: each frame on screen is the right one")
		eq(frame_bytes, player.frame_image.get_data().size(), "now: a whole frame")
	player.free()


## Presents the chunk's n frames, one per call.
## Returns [microseconds spent, every frame the right one].
func _show_frames(player: ShotStreamPlayer, n: int) -> Array:
	var usec := 0
	var right := true
	for f in n:
		var t := Time.get_ticks_usec()
		player.present(1.0 + f / 16.0)
		usec += Time.get_ticks_usec() - t
		right = right and player.frame_image.get_data().decode_u32(0) == 0xF00D0000 + f
	return [usec, right]


func _old_path(message: PackedByteArray, n: int, _frame_bytes: int, rep: int) -> void:
	var player := ShotStreamPlayer.new()
	player.playing = false
	add_child(player)
	var t := Time.get_ticks_usec()
	var decoded: Dictionary = P.decode_server_binary(message)["message"]  # slices the pixels out
	var w: int = decoded["width"]
	var h: int = decoded["height"]
	player.configure(w, h, 16.0, 64, 1)
	var image := Image.create_from_data(w, h * n, false, Image.FORMAT_RGBA8, decoded["pixels"])
	var accepted := player.push_image(image, n, 0.0)
	var arrival := Time.get_ticks_usec() - t
	_add("old_arrival_ms (decode with a copy + push)", arrival)
	var shown := _show_frames(player, n)
	var frames_usec: int = shown[0]
	var right: bool = accepted == n and shown[1]
	_add("old_per_frame_ms (blit + upload)", frames_usec / n)
	_add("old_main_thread_ms_per_chunk", arrival + frames_usec)
	if rep == 0:
		check(right, "old: each frame on screen is the right one")
	player.free()
