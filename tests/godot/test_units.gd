extends "res://tests/test_base.gd"
## The addon's parts without a server: the jitter buffer (same cases as the Unity plugin's),
## the player (texture updated in place, target binding, frame content), the shot map and the
## director (templates, errors, signal binding, reparenting, freeing), the reconnect policy, and
## the client offline (queued cues and their limits, input errors, close and abort, pausing, the
## inbound buffer size, an unreachable server retried with backoff and reported).
## args: {"closed_port": a loopback TCP port nothing listens on}

signal no_args_fired
signal two_args_fired(hero: String, place: String)

const FPS := 16.0
const JB := preload("res://addons/shotstream/jitter_buffer.gd")
const P := preload("res://addons/shotstream/protocol.gd")
const DockScript := preload("res://addons/shotstream/dock.gd")


func run_tests() -> void:
	_jitter_steady_from_bursts()
	_jitter_startup_by_frames()
	_jitter_startup_by_time()
	_jitter_underrun_and_recovery()
	_jitter_capacity_refuse()
	_jitter_capacity_drop_oldest()
	_jitter_timing_exact()
	_jitter_late_poll_skips()
	_jitter_late_poll_delays()
	_jitter_end_of_stream()
	_player()
	_player_targets()
	_player_pause_keeps_every_frame()
	_player_stall_policies()
	_player_time_scale()
	await _player_shot_events()
	await _player_await_shot_ended()
	_shot_map()
	_director()
	_director_lifetime()
	_policy()
	_configuration_warnings()
	_handshake()
	_dock_settings_and_scale()
	_internal_classes_unlisted()
	await _client_offline()
	_client_limits()
	await _client_close_and_abort()
	_client_pause()
	await _client_unreachable()


# -- jitter buffer: frames are (source, offset); source = the arrival index of its frame 0 ------


func _is_frame(jb: ShotStreamJitterBuffer, index: int) -> bool:
	return jb.frame_index == index and int(jb.frame_source) + jb.frame_offset == index


func _jitter_steady_from_bursts() -> void:
	# start-up buffering of two chunks (1 s) covers 0.2 s of arrival jitter
	var jb := ShotStreamJitterBuffer.new(32, FPS, 16)
	var rng := RandomNumberGenerator.new()
	rng.seed = 7
	var arrivals: Array[float] = []
	for c in 12:
		arrivals.append(1.0 + c * 0.5 + rng.randf() * 0.2)
	var next_chunk := 0
	var pushed := 0
	var expect := 0
	var t0 := NAN
	var times: Array[float] = []
	var in_order := true
	for tick in 240 * 8 + 1:  # the game polls at 240 Hz
		var now := tick / 240.0
		while next_chunk < arrivals.size() and arrivals[next_chunk] <= now:
			eq(8, jb.push(pushed, 8, now), "push accepted")
			pushed += 8
			next_chunk += 1
			if next_chunk == arrivals.size():
				jb.complete_adding()
		if not jb.advance(now):
			if not is_nan(t0):
				check(false, "advance is false only before the start")
			continue
		if is_nan(t0):
			t0 = now
		if jb.frame_is_new:
			in_order = in_order and _is_frame(jb, expect)
			times.append(now)
			expect += 1
	check(in_order, "frames in order, none skipped")
	eq(96, expect, "all frames shown")
	eq(0, jb.underruns, "no underrun")
	eq(0, jb.skipped_frames, "no skips")
	var on_clock := true
	for k in times.size():
		if absf(times[k] - (t0 + k / FPS)) > 1e-9:
			on_clock = false
			print("frame %d shown at %f, expected %f" % [k, times[k], t0 + k / FPS])
			break
	check(on_clock, "frame k shown at t0 + k/16")
	eq(JB.State.ENDED, jb.state, "ended")


func _jitter_startup_by_frames() -> void:
	var jb := ShotStreamJitterBuffer.new(16, FPS, 5)
	check(not jb.advance(0.0), "empty")
	jb.push(0, 4, 0.1)
	check(not jb.advance(5.0), "4 < 5 frames: still buffering, however long")
	eq(JB.State.STARTING, jb.state, "starting")
	jb.push(4, 1, 5.1)
	check(jb.advance(5.2), "started")
	check(_is_frame(jb, 0), "first frame")
	check(jb.frame_is_new and not jb.frame_is_held, "new, not held")
	eq(JB.State.PLAYING, jb.state, "playing")
	check(jb.advance(5.2 + 1 / FPS) and _is_frame(jb, 1), "second frame after 1/16 s")


func _jitter_startup_by_time() -> void:
	var jb := ShotStreamJitterBuffer.new(16, FPS, 8, 0.25)
	jb.push(0, 2, 1.0)
	check(not jb.advance(1.0), "just arrived")
	check(not jb.advance(1.2499), "before 250 ms")
	check(jb.advance(1.25) and _is_frame(jb, 0), "at 250 ms")
	eq(1.25 + 1 / FPS, jb.next_due_seconds(), "next due")


func _jitter_underrun_and_recovery() -> void:
	var jb := ShotStreamJitterBuffer.new(16, FPS, 3)
	jb.push(0, 3, 0.0)
	var t := 10.0
	for k in 3:
		check(jb.advance(t + k / FPS) and _is_frame(jb, k), "playing %d" % k)
	check(jb.advance(t + 3 / FPS), "an underrun still returns a frame")
	check(_is_frame(jb, 2), "holds the last frame")
	check(jb.frame_is_held and not jb.frame_is_new, "held, not new")
	eq(1, jb.underruns, "one underrun")
	eq(JB.State.REBUFFERING, jb.state, "rebuffering")
	check(jb.advance(t + 10 / FPS) and _is_frame(jb, 2), "still held later")
	eq(1, jb.underruns, "one underrun per episode")
	jb.push(3, 2, 11.0)
	check(jb.advance(11.0) and _is_frame(jb, 2) and jb.frame_is_held, "2 < 3 frames: holding")
	jb.push(5, 1, 11.5)
	check(jb.advance(11.6) and _is_frame(jb, 3), "recovers with the next frame, none lost")
	check(jb.frame_is_new and not jb.frame_is_held, "new again")
	eq(JB.State.PLAYING, jb.state, "playing")
	check(jb.advance(11.6 + 1 / FPS - 1e-6) and _is_frame(jb, 3), "schedule restarts at recovery")
	check(jb.advance(11.6 + 1 / FPS) and _is_frame(jb, 4), "next at +1/16")
	check(jb.advance(11.6 + 2 / FPS) and _is_frame(jb, 5), "next at +2/16")
	eq(0, jb.skipped_frames, "no skips")


func _jitter_capacity_refuse() -> void:
	var jb := ShotStreamJitterBuffer.new(4, FPS, 1)
	eq(4, jb.push(0, 6, 0.0), "takes what fits")
	eq(2, jb.refused_frames, "refused count")
	eq(4, jb.queued_frames, "queued = capacity")
	eq(0, jb.push(4, 1, 0.0), "full")
	check(jb.advance(1.0) and _is_frame(jb, 0), "oldest first")
	eq(1, jb.push(4, 1, 1.0), "room again after one is presented")
	eq(0, jb.push(5, 1, 1.0), "full again")
	check(_is_frame(jb, 0), "the frame on screen is untouched by pushes")


func _jitter_capacity_drop_oldest() -> void:
	var jb := ShotStreamJitterBuffer.new(4, FPS, 1, 0.0, JB.OverflowPolicy.DROP_OLDEST)
	eq(6, jb.push(0, 6, 0.0), "accepts all")
	eq(2, jb.dropped_frames, "dropped count")
	eq(4, jb.queued_frames, "bounded")
	check(jb.advance(1.0) and _is_frame(jb, 2), "oldest two dropped")
	jb.push(6, 8, 1.0)
	check(_is_frame(jb, 2), "the frame on screen is not dropped")
	check(jb.advance(1.0 + 1 / FPS) and _is_frame(jb, 10), "newest four kept")


func _jitter_timing_exact() -> void:
	var jb := ShotStreamJitterBuffer.new(64, FPS, 1)
	var t0 := 1000.1  # not a binary fraction
	var pushed := 32
	jb.push(0, 32, t0)
	check(jb.advance(t0) and _is_frame(jb, 0), "start")
	var ok := true
	for k in range(1, 20000):
		if jb.queued_frames < 8:
			jb.push(pushed, 32, t0)
			pushed += 32
		var due := t0 + k / FPS
		jb.advance(due - 1e-6)
		if jb.frame_index != k - 1:
			ok = false
			print("1 us before frame %d showed %d" % [k, jb.frame_index])
			break
		jb.advance(due)
		if jb.frame_index != k:
			ok = false
			print("at t0 + %d/16 showed %d" % [k, jb.frame_index])
			break
	check(ok, "20000 frames (about 21 min) each exactly on its slot")
	eq(0, jb.underruns, "no underrun")
	eq(0, jb.skipped_frames, "no skips: no drift")


func _jitter_late_poll_skips() -> void:
	var jb := ShotStreamJitterBuffer.new(16, FPS, 1, 0.0, JB.OverflowPolicy.REFUSE, JB.CatchUp.SKIP)
	jb.push(0, 10, 0.0)
	check(jb.advance(2.0) and _is_frame(jb, 0), "start")
	check(
		jb.advance(2.0 + 3.5 / FPS) and _is_frame(jb, 3),
		"SKIP: a late poll shows the frame due now"
	)
	eq(2, jb.skipped_frames, "frames 1, 2 skipped")
	eq(1, jb.stalls, "one stall")
	eq(2.5 / FPS, jb.last_stall_seconds, "frame 1 was 2.5 slots late")
	check(jb.advance(2.0 + 4 / FPS) and _is_frame(jb, 4), "back on the clock")


## The default: a late poll (the game's clock jumped) shows the next frame and plays on from it.
func _jitter_late_poll_delays() -> void:
	var jb := ShotStreamJitterBuffer.new(16, FPS, 1)
	eq(JB.CatchUp.DELAY, jb.catch_up, "DELAY by default")
	jb.push(0, 10, 0.0)
	check(jb.advance(2.0) and _is_frame(jb, 0), "start")
	check(jb.advance(2.0 + 0.99 / FPS) and _is_frame(jb, 0), "a poll within the slot: no stall")
	check(jb.advance(2.0 + 1.99 / FPS) and _is_frame(jb, 1), "less than a slot late: on time")
	eq(0, jb.stalls, "no stall yet")
	var t := 2.0 + 30.0  # 30 s late
	check(jb.advance(t) and _is_frame(jb, 2), "DELAY: the next frame, not the one due now")
	eq(1, jb.stalls, "one stall")
	eq(30.0 - 0.0 / FPS, jb.last_stall_seconds + 2.0 / FPS, "how late it was")
	check(jb.advance(t + 0.99 / FPS) and _is_frame(jb, 2), "the schedule restarts from it")
	check(jb.advance(t + 1 / FPS) and _is_frame(jb, 3), "next one a slot later")
	eq(0, jb.skipped_frames, "nothing skipped")
	jb.catch_up = JB.CatchUp.SKIP
	check(jb.advance(t + 3 / FPS) and _is_frame(jb, 5), "switched to SKIP at run time")
	eq(1, jb.skipped_frames, "frame 4 skipped")


func _jitter_end_of_stream() -> void:
	var jb := ShotStreamJitterBuffer.new(16, FPS, 8)
	jb.push(0, 2, 0.0)
	check(not jb.advance(0.0), "buffering")
	jb.complete_adding()
	check(jb.advance(0.1) and _is_frame(jb, 0), "the end of the stream starts playback")
	check(jb.advance(0.1 + 1 / FPS) and _is_frame(jb, 1), "last")
	check(jb.advance(0.1 + 2 / FPS) and _is_frame(jb, 1) and jb.frame_is_held, "held at the end")
	eq(JB.State.ENDED, jb.state, "ended")
	eq(0, jb.underruns, "the end is not an underrun")
	jb.reset()
	eq(JB.State.STARTING, jb.state, "reset")
	eq(1, jb.push(2, 1, 2.0), "push after reset")


# -- player -----------------------------------------------------------------------------------


func _chunk(seq: int, n: int, w: int, h: int, fmt: int, first_value: int) -> Dictionary:
	var c := P.default_message("FrameChunk")
	c["chunk_seq"] = seq
	c["num_frames"] = n
	c["width"] = w
	c["height"] = h
	c["frame_format"] = fmt
	var pixels := PackedByteArray()
	pixels.resize(n * w * h * P.channels(fmt))
	for i in pixels.size():
		pixels[i] = (first_value + i * 7) % 256
	c["pixels"] = pixels
	return c


func _player() -> void:
	var player := ShotStreamPlayer.new()
	player.playing = false
	add_child(player)
	var opened := P.default_message("SessionOpened")
	opened["width"] = 6
	opened["height"] = 4
	opened["fps"] = 16
	opened["frames_first_chunk"] = 3
	opened["frames_per_chunk"] = 4
	opened["max_chunks_in_flight"] = 2
	opened["frame_format"] = P.FrameFormat.RGBA8
	player.start_frames = 4
	player.capacity_frames = 2
	player.configure_for_session(opened)
	eq(6, player.width, "width from the session")
	eq(4, player.height, "height from the session")
	eq(3, player.jitter.start_frames, "start frames capped by the first chunk's frames")
	eq(12, player.jitter.capacity, "capacity holds (credits + 1) chunks")
	var tex := player.texture
	check(tex != null and tex.get_width() == 6 and tex.get_height() == 4, "texture sized")
	var first := _chunk(1, 3, 6, 4, P.FrameFormat.RGBA8, 0)
	var second := _chunk(2, 4, 6, 4, P.FrameFormat.RGBA8, 100)
	eq(3, player.push_chunk(first, 0.0), "first chunk queued")
	eq(4, player.push_chunk(second, 0.1), "second chunk queued")
	eq(7, player.pushed_frames, "pushed frames")
	var frame_bytes := 6 * 4 * 4
	var objects_before := Performance.get_monitor(Performance.OBJECT_COUNT)
	var content_ok := true
	for k in 7:
		var t := 1.0 + k / FPS
		check(player.present(t), "frame %d presented" % k)
		var src: Dictionary = first if k < 3 else second
		var off := k if k < 3 else k - 3
		var want: PackedByteArray = src["pixels"].slice(off * frame_bytes, (off + 1) * frame_bytes)
		if player.frame_image.get_data() != want:
			content_ok = false
			print("frame %d content differs" % k)
		eq(k, player.presented_frame_index, "presented index %d" % k)
	check(content_ok, "every frame's pixels reach the texture image")
	var objects_after := Performance.get_monitor(Performance.OBJECT_COUNT)
	check(
		objects_after <= objects_before,
		(
			"presenting creates no objects (texture and image updated in place): %d -> %d"
			% [objects_before, objects_after]
		)
	)
	check(player.texture == tex, "same texture object for the whole session")
	check(not player.present(1.0 + 7 / FPS), "underrun: nothing new")
	# a new session of the same size keeps the texture; another size replaces it
	player.configure_for_session(opened)
	check(player.texture == tex, "same size: texture kept")
	eq(-1, player.presented_frame_index, "reset for the new session")
	var rgb := _chunk(9, 2, 5, 3, P.FrameFormat.RGB8, 1)
	eq(2, player.push_chunk(rgb, 2.0), "a chunk of another size and format reconfigures")
	check(player.texture != tex and player.texture.get_width() == 5, "new texture for the new size")
	check(player.present(5.0), "rgb frame presented")
	eq(Image.FORMAT_RGB8, player.frame_image.get_format(), "rgb image")
	eq(rgb["pixels"].slice(0, 5 * 3 * 3), player.frame_image.get_data(), "rgb frame content")
	var bad := _chunk(10, 2, 5, 3, P.FrameFormat.RGB8, 1)
	bad["num_frames"] = 3
	eq(0, player.push_chunk(bad, 6.0), "a chunk whose pixels do not match is refused")
	var configured := player.configurations
	player.configure(5, 3, 16.0, 8, 1, P.FrameFormat.RGB8)
	eq(configured + 1, player.configurations, "configure() is counted (frame indices restart)")
	eq(0, player.pushed_frames, "indices restart")
	player.queue_free()


func _player_targets() -> void:
	var player := ShotStreamPlayer.new()
	player.playing = false
	var rect := TextureRect.new()
	var sprite := Sprite2D.new()
	var mesh := MeshInstance3D.new()
	mesh.material_override = StandardMaterial3D.new()
	add_child(rect)
	add_child(sprite)
	add_child(mesh)
	add_child(player)
	player.target = rect
	player.configure(4, 2, 16.0, 8, 1)
	check(rect.texture == player.texture and rect.texture != null, "TextureRect gets the texture")
	player.target = sprite
	check(sprite.texture == player.texture, "Sprite2D gets the texture")
	player.target_property = "material_override:albedo_texture"
	player.target = mesh
	var mat := mesh.material_override as StandardMaterial3D
	check(mat.albedo_texture == player.texture, "a 3D material gets the texture")
	var fired: Array[int] = []
	player.frame_presented.connect(func(i: int) -> void: fired.append(i))
	player.push_chunk(_chunk(1, 2, 4, 2, P.FrameFormat.RGBA8, 0), 0.0)
	player.present(0.0)
	eq([0], fired, "frame_presented signal")
	for n: Node in [player, rect, sprite, mesh]:
		n.queue_free()


## Runs [param seconds] of a 60 Hz game loop on [param player]: _process is called only when
## the node would be processed (so the SceneTree pause applies), with the engine's time scale.
func _game_loop(player: ShotStreamPlayer, seconds: float) -> void:
	for _frame in roundi(seconds * 60.0):
		if player.can_process():
			player._process(Engine.time_scale / 60.0)


func _frames_player(capacity: int, frames: int) -> ShotStreamPlayer:
	var player := ShotStreamPlayer.new()
	player.capacity_frames = capacity
	add_child(player)
	player.configure(4, 2, FPS, capacity, 4)
	for c in frames / 12:
		eq(12, player.push_chunk(_chunk(c + 1, 12, 4, 2, P.FrameFormat.RGBA8, c)), "chunk queued")
	return player


## Issue 11: a 5 s pause with a full buffer (36 frames) loses nothing: every frame is shown
## exactly once, in order, and the video stays still while the game is paused.
func _player_pause_keeps_every_frame() -> void:
	var player := _frames_player(36, 36)
	eq(36, player.jitter.queued_frames, "the buffer is full")
	var shown: Array[int] = []
	player.frame_presented.connect(func(i: int) -> void: shown.append(i))
	_game_loop(player, 0.3)
	var before_pause := shown.size()
	check(before_pause >= 4 and before_pause <= 6, "playing before the pause: %d" % before_pause)
	get_tree().paused = true
	check(not player.can_process(), "the player pauses with the tree")
	var clock := player.clock_seconds
	_game_loop(player, 5.0)
	eq(clock, player.clock_seconds, "its clock stood still")
	eq(before_pause, shown.size(), "no frame while paused")
	get_tree().paused = false
	_game_loop(player, 3.0)
	var want: Array[int] = []
	for i in 36:
		want.append(i)
	eq(want, shown, "every frame exactly once, in order")
	eq(0, player.jitter.skipped_frames, "nothing skipped")
	eq(0, player.jitter.stalls, "a pause is no stall")
	# the same pause with the player set to ignore it: it plays on
	var always := _frames_player(36, 12)
	always.process_mode = Node.PROCESS_MODE_ALWAYS
	get_tree().paused = true
	_game_loop(always, 1.0)
	get_tree().paused = false
	eq(11, always.presented_frame_index, "PROCESS_MODE_ALWAYS: played through the pause")
	player.free()
	always.free()


## A stall (one 5 s game frame: a background tab) with a full buffer: DELAY shows every frame and
## reports the stall; SKIP stays on the clock and reports what it skipped.
func _player_stall_policies() -> void:
	for policy: int in [JB.CatchUp.DELAY, JB.CatchUp.SKIP]:
		var player := _frames_player(36, 36)
		player.catch_up = policy
		eq(policy, player.jitter.catch_up, "the policy reaches the buffer")
		var shown: Array[int] = []
		var stalls: Array[String] = []
		player.frame_presented.connect(func(i: int) -> void: shown.append(i))
		player.stalled.connect(
			func(late: float, skipped: int) -> void: stalls.append("%.1f %d" % [late, skipped])
		)
		_game_loop(player, 0.5)
		var before := shown.size()
		player._process(5.0)
		_game_loop(player, 3.0)
		eq(1, stalls.size(), "one stall reported: %s" % [stalls])
		if policy == JB.CatchUp.DELAY:
			eq(36, shown.size(), "DELAY: every frame shown")
			eq(0, player.jitter.skipped_frames, "DELAY: nothing skipped")
			check(stalls.size() == 1 and stalls[0].ends_with(" 0"), "DELAY: 0 skipped")
		else:
			var skipped := player.jitter.skipped_frames
			check(skipped > 25, "SKIP: the frames due during the stall skipped: %d" % skipped)
			eq(36 - skipped, shown.size(), "SKIP: the others shown")
			eq(35, shown[-1] if not shown.is_empty() else -1, "SKIP: up to the last")
			check(stalls.size() == 1 and stalls[0].ends_with(" %d" % skipped), "SKIP: reported")
		check(shown.size() > before, "played on")
		player.free()


func _shot_chunk(seq: int, event_id: String, shot: int, n: int, last: bool) -> Dictionary:
	var c := _chunk(seq, n, 4, 2, P.FrameFormat.RGBA8, seq)
	c["event_id"] = event_id
	c["shot_index"] = shot
	c["last_in_shot"] = last
	return c


## Issue 11: a shot ends when its last frame is on screen, not when its last chunk or its
## ShotFinished arrives; a cut shot (no last_in_shot chunk) ends by ShotFinished or by the next
## shot's first chunk; a shot whose frames will never play ends as interrupted.
func _player_shot_events() -> void:
	var player := ShotStreamPlayer.new()
	player.playing = false
	add_child(player)
	player.configure(4, 2, FPS, 64, 1)
	var log: Array[String] = []
	player.shot_presented.connect(
		func(s: Dictionary) -> void: log.append("P %s %d" % [s["event_id"], s["frame_index"]])
	)
	player.shot_ended.connect(
		func(s: Dictionary) -> void:
			log.append(
				(
					"E %s %d%s%s%s @%d"
					% [
						s["event_id"],
						s["frames"],
						" complete" if s["complete"] else "",
						" cut" if s["cut"] else "",
						" interrupted" if s["interrupted"] else "",
						player.presented_frame_index
					]
				)
			)
	)
	player.push_chunk(_shot_chunk(1, "a", 0, 3, false), 0.0)
	player.push_chunk(_shot_chunk(2, "a", 0, 3, true), 0.0)
	player.end_shot({"event_id": "a", "shot_index": 0, "cut": false})  # arrives with the chunk
	player.push_chunk(_shot_chunk(3, "b", 1, 2, false), 0.0)
	player.end_shot({"event_id": "b", "shot_index": 1, "cut": true})
	player.push_chunk(_shot_chunk(4, "c", 2, 2, true), 0.0)
	eq([], log, "every chunk and ShotFinished arrived: nothing is on screen yet")
	eq({}, player.current_shot, "no shot on screen")
	for k in 5:
		player.present(1.0 + k / FPS)
	eq(["P a 0"], log, "a's first frame presented it; a has not ended (frame 5 is its last)")
	eq("a", player.current_shot.get("event_id"), "a on screen")
	for k in range(5, 10):
		player.present(1.0 + k / FPS)
	eq(
		["P a 0", "E a 6 complete @5", "P b 6", "E b 2 cut @7", "P c 8", "E c 2 complete @9"],
		log,
		"each shot presented with its first frame and ended with its last, in order"
	)
	player.end_shot({"event_id": "c", "shot_index": 2, "cut": false})
	eq(6, log.size(), "a late ShotFinished of a shot that ended already: nothing more")
	var a: Dictionary = await player.wait_shot_ended("a")
	eq(6, a.get("frames"), "wait_shot_ended returns at once for a shot that ended")
	var b: Dictionary = await player.wait_shot_presented("b")
	eq(6, b.get("frame_index"), "wait_shot_presented likewise")
	# a shot with no frames (all refused, or finished before any) ends after the frames before it
	log.clear()
	player.push_chunk(_shot_chunk(5, "d", 3, 3, false), 0.0)
	player.end_shot({"event_id": "gone", "shot_index": 4, "cut": true})
	player.push_chunk(_shot_chunk(6, "e", 5, 3, false), 0.0)
	player.present(2.0)
	player.present(2.0 + 1 / FPS)
	player.present(2.0 + 2 / FPS)
	player.present(2.0 + 3 / FPS)
	eq(["P d 10", "E d 3 @12", "E gone 0 cut @12", "P e 13"], log, "a frameless shot")
	# frames that will never play: e is interrupted by a new configuration
	player.configure(4, 2, FPS, 64, 1)
	eq("E e 1 interrupted @-1", log[-1], "configure() interrupts the shot on screen")
	# end_all_shots (the session ended): the last shot ends once its frames are shown
	log.clear()
	player.push_chunk(_shot_chunk(7, "f", 6, 2, false), 0.0)
	player.present(3.0)
	player.end_all_shots()
	eq(["P f 0"], log, "the session ended: f still has a frame to show")
	player.present(3.0 + 1 / FPS)
	eq(["P f 0", "E f 2 @1"], log, "then it ends")
	player.free()


## `await player.shot_ended` in a running game: it resumes when the shot's last frame is up.
func _player_await_shot_ended() -> void:
	var player := ShotStreamPlayer.new()
	add_child(player)
	player.configure(4, 2, FPS, 64, 1)
	player.push_chunk(_shot_chunk(1, "x", 0, 4, true))
	var t0 := Time.get_ticks_msec()
	var shot: Dictionary = await player.shot_ended
	eq("x", shot.get("event_id"), "the shot that ended")
	eq(3, player.presented_frame_index, "its last frame is on screen")
	eq(4, shot.get("frames"), "all 4 frames shown")
	check(Time.get_ticks_msec() - t0 >= 150, "it took the frames' time (3/16 s)")
	player.queue_free()  # still inside the emit that resumed this function


## Engine.time_scale slows the video down (0 stops it) unless follow_time_scale is off.
func _player_time_scale() -> void:
	var player := _frames_player(36, 24)
	Engine.time_scale = 0.5
	_game_loop(player, 1.0)
	var slow := player.presented_frame_index
	check(slow >= 6 and slow <= 8, "half speed: about 8 frames in 1 s, got %d" % (slow + 1))
	Engine.time_scale = 0.0
	_game_loop(player, 1.0)
	eq(slow, player.presented_frame_index, "time scale 0: stopped")
	Engine.time_scale = 0.5
	player.follow_time_scale = false
	_game_loop(player, 0.5)
	var real := player.presented_frame_index - slow
	check(real >= 7 and real <= 9, "follow_time_scale off: 8 frames in 0.5 s, got %d" % real)
	Engine.time_scale = 1.0
	player.free()


# -- shot map and director --------------------------------------------------------------------


func _shot_map() -> void:
	var map := ShotStreamShotMap.new()
	map.add("enter", "{hero} enters the {place}.", 2)
	map.add(
		"ambush", "Bandits leap at {hero}!", 1, ShotStreamCue.Mode.CUT, PackedStringArray(["act2"])
	)
	map.add("braces", "A sign reads {{{word}}} and }} {{.")
	map.add("plain", "Rain falls.")
	var r := map.resolve("enter", {"hero": "The knight", "place": "hall"})
	eq("", r["error"], "resolve ok")
	eq("The knight enters the hall.", r["prompt"], "template filled")
	eq(2, r["num_chunks"], "num chunks")
	eq("wait", r["mode"], "wait")
	r = map.resolve("ambush", {"hero": 7})
	eq("Bandits leap at 7!", r["prompt"], "non-string parameter")
	eq("cut", r["mode"], "cut")
	eq(PackedStringArray(["act2"]), r["tags"], "tags")
	eq("A sign reads {STOP} and } {.", map.resolve("braces", {"word": "STOP"})["prompt"], "braces")
	eq("Rain falls.", map.resolve("plain")["prompt"], "no parameters")
	var unknown: String = map.resolve("nope")["error"]
	check(
		'unknown event "nope"' in unknown and '"enter"' in unknown,
		"unknown event names the known ones: " + unknown
	)
	var missing: String = map.resolve("enter", {"hero": "x"})["error"]
	check("missing parameter {place}" in missing, "a missing parameter is named: " + missing)
	missing = map.resolve("enter")["error"]
	check("missing parameters {hero}, {place}" in missing, "every missing parameter: " + missing)
	for bad: String in ["{unclosed", "a } b", "{}", "{ }", "{a{b}"]:
		var f := ShotStreamShotMap.fill("e", bad, {"a": 1})
		check(f["error"] != "" and f["text"] == "", "malformed template %s: %s" % [bad, f["error"]])
	eq(PackedStringArray(["enter", "ambush", "braces", "plain"]), map.event_names(), "event names")
	check(map.has_event("plain") and not map.has_event("Plain"), "names are exact")


func _director() -> void:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.log_errors = false
	var director := ShotStreamDirector.new()
	director.log_errors = false
	add_child(client)
	add_child(director)
	var failures: Array[String] = []
	director.fire_failed.connect(func(_e: String, m: String) -> void: failures.append(m))
	eq("", director.fire("enter"), "no shot map: refused")
	director.shot_map = ShotStreamShotMap.new()
	director.shot_map.add("enter", "{hero} enters the {place}.", 2)
	director.shot_map.add("boom", "An explosion.", 1, ShotStreamCue.Mode.CUT)
	eq("", director.fire("enter", {"hero": "h", "place": "p"}), "no client: refused")
	director.client = client
	var cued: Array[String] = []
	director.shot_cued.connect(
		func(e: String, id: String, prompt: String) -> void:
			cued.append("%s|%s|%s" % [e, id, prompt])
	)
	var id := director.fire("enter", {"hero": "The knight", "place": "hall"})
	eq("enter-1", id, "event id")
	eq(["enter|enter-1|The knight enters the hall."], cued, "shot_cued")
	eq("", director.fire("enter", {"hero": "x"}), "missing parameter: nothing sent")
	eq("", director.fire("unknown"), "unknown event: nothing sent")
	eq(4, failures.size(), "fire_failed for each failure")
	# signals -> events, arguments -> parameters by position
	eq(
		OK,
		director.bind_signal(self, "two_args_fired", "enter", PackedStringArray(["hero", "place"])),
		"bind 2"
	)
	eq(OK, director.bind_signal(self, "no_args_fired", "boom"), "bind 0")
	eq(
		ERR_INVALID_PARAMETER,
		director.bind_signal(self, "no_such_signal", "boom"),
		"unknown signal"
	)
	two_args_fired.emit("The queen", "garden")
	no_args_fired.emit()
	var queued := client.queued_messages()
	eq(3, queued.size(), "three cues queued until the session opens")
	var cues: Array[Dictionary] = []
	for text in queued:
		cues.append(P.decode_client_text(text)["message"])
	if cues.size() == 3:
		eq("The queen enters the garden.", cues[1]["prompt"], "signal arguments fill the template")
		eq(P.CueMode.WAIT, cues[1]["mode"], "wait cue")
		eq(2, cues[1]["num_chunks"], "num chunks sent")
		eq(PackedStringArray(["enter"]), cues[1]["tags"], "tagged with the event name")
		eq("An explosion.", cues[2]["prompt"], "zero-argument signal")
		eq(P.CueMode.CUT, cues[2]["mode"], "cut cue")
		eq("boom-3", cues[2]["event_id"], "event id of a bound signal")
	eq(
		ERR_ALREADY_IN_USE,
		director.bind_signal(self, "no_args_fired", "boom"),
		"the same signal and event twice"
	)
	no_args_fired.emit()
	eq(4, client.queued_messages().size(), "bound once: one cue per emission")
	director.unbind_all()
	no_args_fired.emit()
	eq(4, client.queued_messages().size(), "unbound: no more cues")
	eq(-1, ShotStreamDirector.signal_arg_count(self, "nothing"), "arg count of a missing signal")
	eq(
		2,
		ShotStreamDirector.signal_arg_count(self, "two_args_fired"),
		"arg count of a script signal"
	)
	var button := Button.new()
	eq(0, ShotStreamDirector.signal_arg_count(button, "pressed"), "arg count of a native signal")
	eq(1, ShotStreamDirector.signal_arg_count(button, "toggled"), "arg count of toggled")
	button.free()
	director.queue_free()
	client.queue_free()


## Bindings survive the director leaving the tree (reparenting) and end when it is freed.
func _director_lifetime() -> void:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	var director := ShotStreamDirector.new()
	director.client = client
	director.shot_map = ShotStreamShotMap.new().add("boom", "An explosion.")
	add_child(client)
	add_child(director)
	eq(OK, director.bind_signal(self, "no_args_fired", "boom"), "bound")
	var holder := Node.new()
	add_child(holder)
	director.reparent(holder)
	no_args_fired.emit()
	eq(1, client.queued_messages().size(), "reparented: the binding still fires")
	holder.remove_child(director)
	no_args_fired.emit()
	eq(2, client.queued_messages().size(), "out of the tree: still bound")
	director.free()
	no_args_fired.emit()
	eq(2, client.queued_messages().size(), "freed: unbound")
	eq(0, no_args_fired.get_connections().size(), "no connection left on the source")
	holder.free()
	client.free()


func _policy() -> void:
	var p := ShotStreamReconnectPolicy.new(0.1, 1.0, 3)
	eq(0.1, p.delay_for(0), "delay 0")
	eq(0.4, p.delay_for(2), "delay 2")
	eq(1.0, p.delay_for(5), "capped")
	eq(1.0, p.delay_for(100000), "huge retry capped")
	check(p.should_retry(2) and not p.should_retry(3), "max retries")
	check(ShotStreamReconnectPolicy.new(0.1, 1.0, -1).should_retry(1000000), "negative = forever")
	check(not ShotStreamReconnectPolicy.new(0.1, 1.0, 0).should_retry(0), "0 = never")


## Issue 11: the Scene dock warns about a director that cannot fire and a client with a bad URL.
func _configuration_warnings() -> void:
	var director := ShotStreamDirector.new()
	var w := director._get_configuration_warnings()
	check(w.size() == 2 and "Client" in w[0] and "Shot Map" in w[1], "bare director: %s" % [w])
	director.client = ShotStreamClient.new()
	director.shot_map = ShotStreamShotMap.new()
	w = director._get_configuration_warnings()
	check(w.size() == 1 and "no cues" in w[0], "empty shot map: %s" % [w])
	director.shot_map.add("a", "A.").add("a", "Again.").add("", "Nameless.")
	w = director._get_configuration_warnings()
	check(
		w.size() == 2 and '"a"' in w[0] and "no Event Name" in w[1],
		"duplicate and nameless: %s" % [w]
	)
	director.shot_map = ShotStreamShotMap.new().add("a", "A.")
	eq(PackedStringArray(), director._get_configuration_warnings(), "a director ready to fire")
	var client: ShotStreamClient = director.client
	eq(PackedStringArray(), client._get_configuration_warnings(), "the default URL is fine")
	client.server_url = "http://localhost:50052"
	w = client._get_configuration_warnings()
	check(w.size() == 1 and "ws://" in w[0], "a non-WebSocket URL: %s" % [w])
	director.free()
	client.free()


## Issue 11: the token travels in a header on native builds and in the URL only on the web.
func _handshake() -> void:
	var url := "ws://h:1/v1/direct"
	var native := ShotStreamClient.handshake_for(url, "s3cr t/&", false)
	eq(url, native["url"], "native: the URL carries no token")
	eq(PackedStringArray(["Authorization: Bearer s3cr t/&"]), native["headers"], "native: header")
	var web := ShotStreamClient.handshake_for(url, "s3cr t/&", true)
	eq(url + "?token=s3cr%20t%2F%26", web["url"], "web: ?token=, URL-encoded")
	eq(PackedStringArray(), web["headers"], "web: no header (browsers cannot set one)")
	eq(
		url + "?s=x&token=t",
		ShotStreamClient.handshake_for(url + "?s=x", "t", true)["url"],
		"web: &"
	)
	var none := ShotStreamClient.handshake_for(url, "", false)
	eq([url, PackedStringArray()], [none["url"], none["headers"]], "no token: nothing added")


## Issue 11: the dock scales its fixed sizes by the editor's scale, and hands the plugin the
## fields it keeps between editor sessions (not the token).
func _dock_settings_and_scale() -> void:
	var dock: DockScript = DockScript.new()
	add_child(dock)
	eq(Vector2(240, 135), dock.preview.custom_minimum_size, "preview at scale 1")
	dock.set_ui_scale(2.0)
	eq(Vector2(480, 270), dock.preview.custom_minimum_size, "preview at scale 2")
	eq(Vector2(520, 0), dock.custom_minimum_size, "the dock's width at scale 2")
	eq(2.0, dock.get_ui_scale(), "scale kept")
	var changes := [0]
	dock.settings_changed.connect(func() -> void: changes[0] += 1)
	# what typing emits (setting text from code emits nothing, and a headless run cannot type)
	dock.url_edit.text_changed.emit("ws://typed")
	dock.decoder_option.item_selected.emit(1)
	eq(2, changes[0], "editing a field or the decoder: settings_changed")
	dock.apply_settings(
		{"url": "ws://far:9/v1/direct", "caption": "Rain.", "seed": "7", "decoder": P.Decoder.TAE}
	)
	eq(
		{"url": "ws://far:9/v1/direct", "caption": "Rain.", "seed": "7", "decoder": P.Decoder.TAE},
		dock.settings(),
		"settings round-trip"
	)
	dock.token_edit.text = "secret"
	check(not "secret" in str(dock.settings()), "the token is not among the kept settings")
	dock.apply_settings({"url": null, "caption": 5, "decoder": 99})
	eq("ws://far:9/v1/direct", dock.url_edit.text, "missing or wrong values change nothing")
	eq(P.Decoder.TAE, dock.decoder_option.get_selected_id(), "an unknown decoder changes nothing")
	eq(
		PackedStringArray(DockScript.SETTING_KEYS),
		PackedStringArray(dock.settings().keys()),
		"keys"
	)
	dock.free()


## Issue 11: the Create New Node dialog lists the addon's nodes only, with their icons; the dock
## and the helpers are not nodes there.
func _internal_classes_unlisted() -> void:
	var nodes := {}
	for c: Dictionary in ProjectSettings.get_global_class_list():
		if String(c["path"]).begins_with("res://addons/shotstream/"):
			if ClassDB.is_parent_class(c["base"], "Node"):
				nodes[String(c["class"])] = c["icon"]
	eq(
		[
			"ShotStreamClient",
			"ShotStreamCutscenePlayer",
			"ShotStreamDirector",
			"ShotStreamPlayer",
		],
		nodes.keys().map(func(k: String) -> String: return k),
		"node classes"
	)
	for k: String in nodes:
		check(String(nodes[k]).ends_with(".svg"), "%s has an icon: %s" % [k, nodes[k]])
		check(FileAccess.file_exists(nodes[k]), "%s's icon ships: %s" % [k, nodes[k]])


# -- client without a server --------------------------------------------------------------------


func _client_offline() -> void:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.log_errors = false
	add_child(client)
	var errors: Array[String] = []
	client.error_received.connect(
		func(code: int, message: String, _fatal: bool) -> void:
			errors.append("%d %s" % [code, message])
	)
	eq("godot-1", client.cue("A shot."), "cue while disconnected: queued, id assigned")
	eq("", client.cue("   "), "empty prompt refused")
	eq("", client.cue("x", "", -1), "negative chunks refused")
	eq("", client.cue("x", "", 0, "sideways"), "unknown mode refused")
	eq("mine", client.cut("Cut!", "mine", 1), "cut with own id")
	eq(3, errors.size(), "each refusal reported")
	var q := client.queued_messages()
	eq(2, q.size(), "two cues queued")
	if q.size() == 2:
		eq(P.CueMode.CUT, P.decode_client_text(q[1])["message"]["mode"], "cut mode queued")
	client.pause()
	eq(4, errors.size(), "pause without a session is reported")
	client.server_url = "http://127.0.0.1:9/v1/direct"
	eq(ERR_INVALID_PARAMETER, client.open_session(), "bad URL scheme refused")
	eq(ShotStreamClient.State.DISCONNECTED, client.state, "still disconnected")
	check(client.effective_client_name().begins_with("godot/"), "client name godot/<project>")
	eq(P.Decoder.UNSPECIFIED, client.decoder, "decoder: the server's default")
	eq({}, client.take, "no take without a session")
	var before := errors.size()
	client.start_take("t", P.TakeQuality.FULL)
	eq(before + 1, errors.size(), "start_take without a session is reported")
	client.queue_free()
	await get_tree().process_frame


## Local limits: the queue, the gateway's message size, the open message, the inbound buffer.
func _client_limits() -> void:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.log_errors = false
	var errors: Array[String] = []
	client.error_received.connect(func(_c: int, m: String, _f: bool) -> void: errors.append(m))
	for i in ShotStreamClient.MAX_QUEUED_CUES:
		client.cue("shot %d" % i)
	eq(ShotStreamClient.MAX_QUEUED_CUES, client.queued_messages().size(), "queue filled")
	check(errors.is_empty(), "no error while it fills: %s" % [errors])
	eq("", client.cue("one too many"), "a full queue refuses the cue")
	eq(ShotStreamClient.MAX_QUEUED_CUES, client.queued_messages().size(), "the queue is capped")
	check(errors.size() == 1 and "already waiting" in errors[0], "overflow reported: %s" % [errors])
	client.abort()
	eq(0, client.queued_messages().size(), "abort drops the queue")
	var huge := "x".repeat(ShotStreamClient.MAX_CLIENT_MESSAGE_BYTES)
	eq("", client.cue(huge), "a cue over the gateway's 64 KiB refused")
	check(errors.size() == 2 and "at most 65536" in errors[1], "size reported: %s" % [errors])
	var fits := "x".repeat(ShotStreamClient.MAX_CLIENT_MESSAGE_BYTES - 100)
	eq("fits", client.cue(fits, "fits"), "a cue just under the limit is kept")
	client.global_caption = huge
	eq(ERR_INVALID_PARAMETER, client.open_session(), "an open over the limit refused")
	eq(ShotStreamClient.State.DISCONNECTED, client.state, "not connecting")
	# automatic inbound buffer: credits x the 1.3B model's largest chunk, plus the text messages
	var rgba_chunk := 12 * 832 * 480 * 4 + ShotStreamClient.CHUNK_HEADER_BYTES
	var text := ShotStreamClient.TEXT_MESSAGES_BYTES
	eq(2 * rgba_chunk + text, client.effective_inbound_buffer_bytes(), "2 credits of RGBA8")
	client.max_chunks_in_flight = 0
	eq(2 * rgba_chunk + text, client.effective_inbound_buffer_bytes(), "0 = the server's 2")
	client.max_chunks_in_flight = 5
	client.frame_format = P.FrameFormat.RGB8
	eq(
		5 * (12 * 832 * 480 * 3 + ShotStreamClient.CHUNK_HEADER_BYTES) + text,
		client.effective_inbound_buffer_bytes(),
		"5 credits of RGB8"
	)
	client.inbound_buffer_bytes = 5000
	eq(5000, client.effective_inbound_buffer_bytes(), "set by hand")
	client.free()


## close() outside an open session ends it with "client", abort() with "aborted"; both drop the
## queued cues.
func _client_close_and_abort() -> void:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.log_errors = false
	client.server_url = "ws://127.0.0.1:%d/v1/direct" % int(args().get("closed_port", 9))
	add_child(client)
	var reasons: Array[String] = []
	client.disconnected.connect(func(r: String) -> void: reasons.append(r))
	client.cue("queued")
	client.open_session()
	eq(ShotStreamClient.State.CONNECTING, client.state, "connecting")
	client.close()
	eq(["client"], reasons, "close() while connecting")
	eq(0, client.queued_messages().size(), "close drops the queue")
	client.close()
	eq(["client"], reasons, "close() when disconnected: nothing more")
	client.open_session()
	client.abort()
	eq(["client", "aborted"], reasons, "abort()")
	await get_tree().process_frame
	eq(ShotStreamClient.State.DISCONNECTED, client.state, "still disconnected a frame later")
	client.queue_free()


## The client keeps processing while the game is paused; the player pauses with the game.
func _client_pause() -> void:
	var client := ShotStreamClient.new()
	var player := ShotStreamPlayer.new()
	client.connect_on_ready = false
	add_child(client)
	add_child(player)
	get_tree().paused = true
	check(client.can_process(), "the client processes while paused")
	check(not player.can_process(), "the player pauses")
	get_tree().paused = false
	check(player.can_process(), "and resumes")
	client.free()
	player.free()


func _client_unreachable() -> void:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.server_url = "ws://127.0.0.1:%d/v1/direct" % int(args().get("closed_port", 9))
	client.reconnect_initial_s = 0.05
	client.reconnect_max_s = 0.1
	client.reconnect_max_retries = 2
	add_child(client)
	var states: Array[int] = []
	var errors: Array[String] = []
	var reasons: Array[String] = []
	client.state_changed.connect(func(s: int) -> void: states.append(s))
	client.error_received.connect(
		func(_c: int, m: String, fatal: bool) -> void: errors.append(("F " if fatal else "") + m)
	)
	client.disconnected.connect(func(r: String) -> void: reasons.append(r))
	var t0 := Time.get_ticks_msec()
	eq(OK, client.open_session(), "open_session starts")
	while (
		client.state != ShotStreamClient.State.DISCONNECTED and Time.get_ticks_msec() - t0 < 15000
	):
		await get_tree().process_frame
	eq(ShotStreamClient.State.DISCONNECTED, client.state, "gave up")
	var connects := states.count(ShotStreamClient.State.CONNECTING)
	eq(3, connects, "1 attempt + 2 retries")
	eq(2, states.count(ShotStreamClient.State.WAITING_TO_RETRY), "waited twice")
	eq(["unreachable"], reasons, "disconnected(unreachable)")
	check(
		(
			errors.size() == 1
			and errors[0].begins_with("F ")
			and "shotstream serve" in errors[0]
			and "wrong token or path" in errors[0]
		),
		"one fatal, actionable error: %s" % [errors]
	)
	check(Time.get_ticks_msec() - t0 >= 140, "backoff delays were waited (0.05 + 0.1 s)")
	client.queue_free()
