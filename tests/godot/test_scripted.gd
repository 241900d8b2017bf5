extends "res://tests/test_base.gd"
## ShotStreamClient against a scripted gateway (tests/test_godot_addon.py, _ScriptedGateway): one
## scenario per connection URL (?s=NAME). The Python side checks what the gateway received (the
## messages, the acks, and whether the client closed the WebSocket itself after the session
## ended); this side checks what the client reported.
## args: {"url": the scripted gateway's ws://.../v1/direct}

var _base := ""


func run_tests() -> void:
	_base = args().get("url", "")
	check(_base.begins_with("ws://"), "gateway URL given")
	await _drop_reparent_pause()
	await _server_shutdown("shutdown")
	await _server_shutdown("frame_shutdown")
	await _fatal("fatal")
	await _fatal("frame_fatal")
	await _no_opened()
	await _deaf_server()
	await _shared_memory_refused()
	await _overflow()
	if ShotStreamClient.BrowserSocket.available():
		await _no_overflow_in_the_browser()
	await _burst_then_close(false)
	if ShotStreamClient.BrowserSocket.available():
		await _burst_then_close(true)
	await _bad_chunks()
	await _acks_and_cues()
	await _decoder_and_takes()
	await _director_events()
	await _freed()


func _client(scenario: String) -> ShotStreamClient:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.log_errors = false
	client.server_url = "%s?s=%s" % [_base, scenario]
	client.reconnect_initial_s = 0.05
	add_child(client)
	return client


## What a client reports: session ids, disconnect reasons, errors ("F " = fatal), chunk seqs.
func _watch(client: ShotStreamClient) -> Dictionary:
	var log := {"sessions": [], "reasons": [], "errors": [], "codes": [], "chunks": []}
	client.connected.connect(func(s: Dictionary) -> void: log["sessions"].append(s["session_id"]))
	client.disconnected.connect(func(r: String) -> void: log["reasons"].append(r))
	client.error_received.connect(
		func(code: int, m: String, fatal: bool) -> void:
			log["errors"].append(("F " if fatal else "") + m)
			log["codes"].append(code)
	)
	client.chunk_received.connect(func(c: Dictionary) -> void: log["chunks"].append(c["chunk_seq"]))
	return log


func _ended(log: Dictionary, count: int = 1) -> Callable:
	return func() -> bool: return log["reasons"].size() >= count


## The first session's TCP connection drops (no close frame): reported, and a new session opens
## after the backoff, while the game is paused and after the client was reparented.
func _drop_reparent_pause() -> void:
	var client := _client("drop")
	client.token = "s3cr t/&"
	client.global_caption = "Reconnect test."
	client.story_seed = 9
	var log := _watch(client)
	var holder := Node.new()
	add_child(holder)
	eq(Node.PROCESS_MODE_ALWAYS, client.process_mode, "the client processes while paused")
	client.connected.connect(
		func(s: Dictionary) -> void:
			if s["session_id"] == "drop-1":
				get_tree().paused = true  # the reconnect happens while the game is paused
			else:
				client.reparent.call_deferred(holder)  # leaving the tree keeps the session
				client.cue("second shot", "b")
	)
	# close after this chunk's ack, which follows the signal
	client.chunk_received.connect(func(_c: Dictionary) -> void: client.close.call_deferred())
	client.cue("first shot", "a")
	client.open_session()
	await _wait(func() -> bool: return client.is_session_open(), "the first session")
	if client._ws is WebSocketPeer:  # (the browser's WebSocket has no heartbeat setting)
		eq(ShotStreamClient.HEARTBEAT_S, client._ws.get("heartbeat_interval"), "heartbeat (4.4+)")
	else:
		check(client._ws is ShotStreamClient.BrowserSocket, "a web build uses the browser's socket")
	await _wait(_ended(log, 2), "the second session to end")
	check(not get_tree().root.can_process(), "the game was paused meanwhile")
	check(client.can_process(), "and the client still processed")
	get_tree().paused = false
	eq(["drop-1", "drop-2"], log["sessions"], "two sessions: the second opened after the drop")
	eq(["connection lost", "client"], log["reasons"], "disconnect reasons")
	eq(holder, client.get_parent(), "reparented")
	eq(1, client.reconnects, "one reconnect")
	eq([1], log["chunks"], "the chunk of the second session")
	check(
		log["errors"].size() == 1 and "new session" in log["errors"][0],
		"the drop is reported, not fatal: %s" % [log["errors"]]
	)
	eq(ShotStreamClient.State.DISCONNECTED, client.state, "closed at the end")
	holder.queue_free()


## The server ends the session with closed "server shutdown" (or only says so in its close
## frame, as native builds may lose the message): a new session opens.
func _server_shutdown(scenario: String) -> void:
	var client := _client(scenario)
	var log := _watch(client)
	client.connected.connect(
		func(s: Dictionary) -> void:
			if s["session_id"].ends_with("-2"):
				client.close()
	)
	client.cue("before the shutdown", "a")
	client.open_session()
	await _wait(_ended(log, 2), scenario + ": two sessions")
	eq(["%s-1" % scenario, "%s-2" % scenario], log["sessions"], scenario + ": reopened")
	eq(["server shutdown", "client"], log["reasons"], scenario + ": reasons")
	eq(1, client.reconnects, scenario + ": one reconnect")
	check(
		log["errors"].size() == 1 and not log["errors"][0].begins_with("F "),
		scenario + ": the restart is reported, not fatal: %s" % [log["errors"]]
	)
	client.queue_free()


## A fatal error (in a message, or only in the close frame) ends the session: no retry.
func _fatal(scenario: String) -> void:
	var client := _client(scenario)
	var log := _watch(client)
	client.open_session()
	await _wait(_ended(log), scenario + ": the end")
	eq(["error"], log["reasons"], scenario + ": reason")
	eq([8], log["codes"], scenario + ": RESOURCE_EXHAUSTED")
	check(
		log["errors"].size() == 1 and log["errors"][0].begins_with("F the server is full"),
		scenario + ": one fatal error: %s" % [log["errors"]]
	)
	eq(ShotStreamClient.State.DISCONNECTED, client.state, scenario + ": not retrying")
	client.queue_free()


## The server accepts the WebSocket but never answers open: the wait times out.
func _no_opened() -> void:
	var client := _client("silent")
	client.connect_timeout_s = 0.3
	client.reconnect_max_retries = 0
	var log := _watch(client)
	client.open_session()
	await _wait(_ended(log), "silent: the end")
	eq(["unreachable"], log["reasons"], "silent: gave up")
	check(
		log["errors"].size() == 1 and "did not answer open within 0.3 s" in log["errors"][0],
		"silent: says why: %s" % [log["errors"]]
	)


## The server ignores close and then stops reading: the client closes, then drops the socket.
func _deaf_server() -> void:
	var client := _client("deaf")
	client.close_timeout_s = 0.3
	var log := _watch(client)
	client.open_session()
	await _wait(func() -> bool: return client.is_session_open(), "deaf: open")
	client.close()
	eq(ShotStreamClient.State.CLOSING, client.state, "deaf: closing")
	await _wait(_ended(log), "deaf: the end")
	eq(["client"], log["reasons"], "deaf: closed by the client")
	check(
		(
			log["errors"].size() == 1
			and log["errors"][0].begins_with("F ")
			and "did not finish closing" in log["errors"][0]
		),
		"deaf: the timeout is reported: %s" % [log["errors"]]
	)
	client.queue_free()


## A session opened with shared memory cannot be read: refused.
func _shared_memory_refused() -> void:
	var client := _client("shm")
	var log := _watch(client)
	client.open_session()
	await _wait(_ended(log), "shm: the end")
	eq(["error"], log["reasons"], "shm: refused")
	eq([], log["sessions"], "shm: never reported as connected")
	check(
		log["errors"].size() == 1 and "TRANSPORT_SHARED_MEMORY" in log["errors"][0],
		"shm: says why: %s" % [log["errors"]]
	)
	client.queue_free()


## A burst that does not fit the inbound buffer: the engine drops chunk 3 ("Buffer payload
## full"); the client reports the gap and acks 3, so the server goes on (chunk 4).
func _overflow() -> void:
	var client := _client("overflow")
	client.browser_socket = false  # a WebSocketPeer's buffer (the browser's socket buffers all)
	client.inbound_buffer_bytes = 4096  # Godot rounds its ring up to 8192: two 3 KB chunks fit
	client.auto_poll = false
	var log := _watch(client)
	client.chunk_received.connect(
		func(c: Dictionary) -> void:
			if c["chunk_seq"] == 4:
				client.close.call_deferred()  # after its ack
	)
	client.open_session()
	var poll := func() -> bool:
		client.poll()
		return client.is_session_open()
	await _wait(poll, "overflow: open")
	check(
		log["errors"].size() == 1 and "cannot hold this session's 3 chunks" in log["errors"][0],
		"overflow: the small buffer is reported at open: %s" % [log["errors"]]
	)
	client.cue("burst", "burst")
	# not polled: the burst (chunks 1-3, then stats) lands in the socket's buffer, chunk 3 is lost
	await _wait(
		func() -> bool: return client._ws.get_available_packet_count() >= 3, "overflow: the burst"
	)
	var polled := func() -> bool:
		client.poll()
		return not log["reasons"].is_empty()
	await _wait(polled, "overflow: the end")
	eq([1, 2, 4], log["chunks"], "overflow: chunk 3 was dropped")
	check(
		log["errors"].size() == 2 and "chunks 3 to 3 never arrived" in log["errors"][1],
		"overflow: the gap is reported: %s" % [log["errors"]]
	)
	eq(["client"], log["reasons"], "overflow: ended normally")
	client.queue_free()


## Three chunks, `closed` and the socket's close, all before the client polls: a poll handles one
## chunk at most, and the socket's end waits until every message before it was handled.
func _burst_then_close(browser: bool) -> void:
	var what := "burst then close (%s)" % ("browser" if browser else "WebSocketPeer")
	var client := _client("burst_close")
	client.browser_socket = browser
	client.auto_poll = false
	client.auto_reconnect = false
	var log := _watch(client)
	client.open_session()
	var poll := func() -> bool:
		client.poll()
		return client.is_session_open()
	await _wait(poll, what + ": open")
	client.cue("burst", "burst")
	await _wait(
		func() -> bool: return client._ws.get_ready_state() == WebSocketPeer.STATE_CLOSED,
		what + ": the socket closed"
	)
	var per_poll: Array[int] = []
	var polled := func() -> bool:
		var before: int = log["chunks"].size()
		client.poll()
		per_poll.append(log["chunks"].size() - before)
		return not log["reasons"].is_empty()
	await _wait(polled, what + ": the end")
	eq([1, 2, 3], log["chunks"], what + ": every chunk before the close was handled")
	eq(1, per_poll.max(), what + ": one chunk per poll at most")
	eq(["idle"], log["reasons"], what + ": the session's end as the server said it")
	client.queue_free()


## The same burst through the browser's WebSocket (a web build's default): the browser keeps every
## message, so nothing is dropped, and a poll handles one chunk at most.
func _no_overflow_in_the_browser() -> void:
	var client := _client("overflow")
	client.inbound_buffer_bytes = 4096  # a WebSocketPeer's setting: no effect here
	client.auto_poll = false
	var log := _watch(client)
	client.open_session()
	var poll := func() -> bool:
		client.poll()
		return client.is_session_open()
	await _wait(poll, "browser burst: open")
	check(client._ws is ShotStreamClient.BrowserSocket, "browser burst: the browser's socket")
	client.cue("burst", "burst")
	await _wait(
		func() -> bool: return client._ws.get_available_packet_count() >= 3, "browser burst: queued"
	)
	var per_poll: Array[int] = []
	var polled := func() -> bool:
		var before: int = log["chunks"].size()
		client.poll()
		per_poll.append(log["chunks"].size() - before)
		if log["chunks"].size() == 4 and client.is_session_open():
			client.close()
		return not log["reasons"].is_empty()
	await _wait(polled, "browser burst: the end")
	eq([1, 2, 3, 4], log["chunks"], "browser burst: every chunk arrived")
	eq([], log["errors"], "browser burst: nothing reported")
	eq(1, per_poll.max(), "browser burst: one chunk per poll at most")
	eq(["client"], log["reasons"], "browser burst: ended normally")
	client.queue_free()


## A chunk whose pixels do not match its header, and a chunk without pixels (shared memory):
## both reported and acked; the good chunk after them plays.
func _bad_chunks() -> void:
	var client := _client("bad_chunk")
	var log := _watch(client)
	client.chunk_received.connect(func(_c: Dictionary) -> void: client.close.call_deferred())
	client.open_session()
	client.cue("bad chunks", "bad")
	await _wait(_ended(log), "bad_chunk: the end")
	eq([3], log["chunks"], "bad_chunk: only the good chunk")
	var errors: Array = log["errors"]
	check(
		errors.size() == 2 and "pixel bytes" in errors[0] and "not playable" in errors[1],
		"bad_chunk: both reported: %s" % [errors]
	)
	eq(["client"], log["reasons"], "bad_chunk: ended normally")
	client.queue_free()


## Acks wait for the player; reconfiguring it acks what can no longer play. Cue bookkeeping:
## rejected and finished cues are forgotten; num_chunks is checked against the session.
func _acks_and_cues() -> void:
	var client := _client("acks")
	var player := ShotStreamPlayer.new()
	player.playing = false  # nothing is presented: acks wait
	add_child(player)
	client.player = player
	var log := _watch(client)
	client.open_session()
	await _wait(func() -> bool: return client.is_session_open(), "acks: open")
	eq("", client.cue("too long", "", 8), "acks: more chunks than the session's 7 refused")
	client.cue("rejected", "nope")
	client.cue("cut before its first chunk", "gone")
	client.cue("plays", "shot")
	await _wait(func() -> bool: return log["chunks"].size() == 1, "acks: chunk 1")
	eq(1, client._acks.size(), "acks: chunk 1's ack waits for its frame")
	eq({}, client._cue_sent_us, "acks: no cue is still timed")
	player.configure(4, 2)  # frame 0 of the old configuration will never play
	await _wait(func() -> bool: return log["chunks"].size() == 2, "acks: chunk 2 (after the ack)")
	eq([1, 2], log["chunks"], "acks: chunks")
	client.close()
	await _wait(_ended(log), "acks: the end")
	eq([0, 3], log["codes"], "acks: the refused cue (local) and the rejected one (server)")
	client.queue_free()
	player.queue_free()


## A TAE session (the decoder asked for and the one granted), then a live take and a full one:
## [member ShotStreamClient.take] while each records, full_path and full_bytes when saved.
func _decoder_and_takes() -> void:
	var client := _client("takes")
	client.decoder = ShotStreamProtocol.Decoder.TAE
	var log := _watch(client)
	var started: Array[Dictionary] = []
	var saved: Array[Dictionary] = []
	client.take_started.connect(
		func(take_name: String, path: String) -> void:
			eq(take_name, client.take.get("name"), "takes: take holds the take that started")
			eq(path, client.take.get("path"), "takes: and its path")
			started.append(client.take)
	)
	client.take_saved.connect(func(t: Dictionary) -> void: saved.append(t))
	client.open_session()
	await _wait(func() -> bool: return client.is_session_open(), "takes: open")
	eq(ShotStreamProtocol.Decoder.TAE, client.session.get("decoder"), "takes: the server's decoder")
	eq({}, client.take, "takes: none recording yet")
	client.start_take("live")
	await _wait(func() -> bool: return started.size() == 1, "takes: the live take starts")
	eq(ShotStreamProtocol.TakeQuality.LIVE, client.take.get("quality"), "takes: live granted")
	eq("", client.take.get("full_path"), "takes: a live take has no full path")
	client.stop_take()
	await _wait(func() -> bool: return saved.size() == 1, "takes: the live take is saved")
	eq({}, client.take, "takes: none recording after take_saved")
	eq("/srv/takes/live.mp4", saved[0]["path"], "takes: live path")
	eq("", saved[0]["full_path"], "takes: live, no full path")
	eq(0, saved[0]["full_bytes"], "takes: live, no full bytes")
	client.start_take("hd", ShotStreamProtocol.TakeQuality.FULL)
	await _wait(func() -> bool: return started.size() == 2, "takes: the full take starts")
	eq(ShotStreamProtocol.TakeQuality.FULL, client.take.get("quality"), "takes: full granted")
	eq("/srv/takes/hd.full.mp4", client.take.get("full_path"), "takes: where the full MP4 goes")
	client.stop_take()
	await _wait(func() -> bool: return saved.size() == 2, "takes: the full take is saved")
	eq("/srv/takes/hd.mp4", saved[1]["path"], "takes: full take, live path")
	eq("/srv/takes/hd.full.mp4", saved[1]["full_path"], "takes: full path")
	eq(7000000000, saved[1]["full_bytes"], "takes: full bytes")
	client.close()
	await _wait(_ended(log), "takes: the end")
	eq(["client"], log["reasons"], "takes: ended normally")
	eq([], log["errors"], "takes: no error")
	eq({}, client.session, "takes: no session after the end")
	client.queue_free()


func _play_into(director: ShotStreamDirector, event_name: String, results: Dictionary) -> void:
	results[event_name] = await director.play(event_name)


## Issue 11: the director reports each of its shots under its event name, on the server and on
## screen, and play() resumes when the shot has ended on screen, or with the reason it never will.
func _director_events() -> void:
	var client := _client("director")
	var player := ShotStreamPlayer.new()
	add_child(player)
	client.player = player
	var director := ShotStreamDirector.new()
	director.log_errors = false
	director.shot_map = (
		ShotStreamShotMap
		. new()
		. add("one", "One.", 1)
		. add("two", "Two.", 1)
		. add("bad", "Bad.", 1)
		. add("three", "Three!", 1, ShotStreamCue.Mode.CUT)
	)
	director.client = client
	add_child(director)
	var events: Array[String] = []
	for sig: String in ["shot_started", "shot_finished", "shot_presented", "shot_ended"]:
		director.connect(
			sig,
			func(event_name: String, id: String, _shot: Dictionary) -> void:
				events.append("%s %s %s" % [sig, event_name, id])
		)
	director.shot_dropped.connect(
		func(event_name: String, id: String, reason: String) -> void:
			events.append("shot_dropped %s %s %s" % [event_name, id, reason])
	)
	var failed: Array[String] = []
	director.fire_failed.connect(
		func(e: String, m: String) -> void: failed.append("%s %s" % [e, m])
	)
	var results := {}
	var nothing: Dictionary = await director.play("nothing")
	check(nothing["error"].begins_with("ShotStreamDirector: unknown event"), "play: unknown event")
	for event_name: String in ["one", "two", "bad", "three"]:
		_play_into(director, event_name, results)
	client.open_session()
	await _wait(func() -> bool: return results.size() == 4, "director: every play() returned")
	var one: Dictionary = results.get("one", {})
	eq(["", 2, true], [one.get("error"), one.get("frames"), one.get("complete")], "director: one")
	eq("dropped by a cut", results.get("two", {}).get("error"), "director: two dropped by the cut")
	eq("prompt rejected", results.get("bad", {}).get("error"), "director: bad refused")
	var three: Dictionary = results.get("three", {})
	eq(
		["", 3, "three-4"],
		[three.get("error"), three.get("frames"), three.get("event_id")],
		"three"
	)
	eq(4, player.presented_frame_index, "director: three's last frame (2 + 3 frames) is on screen")
	for id: String in ["one one-1", "three three-4"]:
		var mine := events.filter(func(e: String) -> bool: return e.ends_with(id))
		eq(
			["shot_started", "shot_finished", "shot_presented", "shot_ended"],
			mine.map(func(e: String) -> String: return e.get_slice(" ", 0)),
			"director: %s's events in order" % id
		)
	check("shot_dropped two two-2 dropped by a cut" in events, "director: two reported dropped")
	check("shot_dropped bad bad-3 prompt rejected" in events, "director: bad reported dropped")
	check("bad prompt rejected" in failed, "director: bad reported as fire_failed: %s" % [failed])
	await _wait(func() -> bool: return client._acks.is_empty(), "director: the last ack")
	client.close()
	await _wait(func() -> bool: return client.state == ShotStreamClient.State.DISCONNECTED, "end")
	director.queue_free()
	client.queue_free()
	player.queue_free()


## Freeing a connected client closes its WebSocket (normal closure, not the socket's destructor);
## a second connection asks the gateway how the first one ended.
func _freed() -> void:
	var client := _client("free")
	client.open_session()
	await _wait(func() -> bool: return client.is_session_open(), "free: open")
	client.free()
	var observer := _client("free_check")
	var log := _watch(observer)
	observer.open_session()
	await _wait(_ended(log), "free_check: the answer")
	eq(["the freed client closed with 1000"], log["reasons"], "freeing a client closes its socket")
	observer.queue_free()
