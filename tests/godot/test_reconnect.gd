extends "res://tests/test_base.gd"
## Reconnecting: a scripted gateway (tests/test_godot_addon.py) drops the first session's TCP
## connection without a close frame; the client reports it, reopens a new session after the
## backoff delay, and goes on. Also checks the token query parameter and acks.
## args: {"url": the scripted gateway's URL}


func run_tests() -> void:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.server_url = args().get("url", "")
	client.token = "s3cr t/&"
	client.reconnect_initial_s = 0.05
	client.global_caption = "Reconnect test."
	client.story_seed = 9
	add_child(client)
	var sessions: Array[String] = []
	var reasons: Array[String] = []
	var errors: Array[String] = []
	var chunks: Array[int] = []
	client.connected.connect(
		func(s: Dictionary) -> void:
			sessions.append(s["session_id"])
			if sessions.size() == 2:
				client.cue("second shot", "b")
	)
	client.disconnected.connect(func(r: String) -> void: reasons.append(r))
	client.error_received.connect(
		func(_c: int, m: String, fatal: bool) -> void: errors.append(("F " if fatal else "") + m)
	)
	client.chunk_received.connect(
		func(c: Dictionary) -> void:
			chunks.append(c["chunk_seq"])
			client.close.call_deferred()  # after the ack that follows this signal
	)
	client.cue("first shot", "a")
	client.open_session()
	var t0 := Time.get_ticks_msec()
	while reasons.size() < 2 and Time.get_ticks_msec() - t0 < 20000:
		await get_tree().process_frame
	eq(["fake-1", "fake-2"], sessions, "two sessions: the second opened after the drop")
	eq(["connection lost", "client"], reasons, "disconnect reasons")
	eq(1, client.reconnects, "one reconnect")
	eq([7], chunks, "the chunk of the second session")
	check(
		errors.size() == 1 and not errors[0].begins_with("F ") and "new session" in errors[0],
		"the drop is reported, not fatal: %s" % [errors]
	)
	eq(ShotStreamClient.State.DISCONNECTED, client.state, "closed at the end")
	client.queue_free()
