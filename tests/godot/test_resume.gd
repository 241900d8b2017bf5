extends "res://tests/test_base.gd"
## ShotStreamClient.resume_story against the scripted gateway (tests/test_godot_addon.py,
## scenarios "resume_snap" and "resume_fresh"; the Python side checks what the gateway received):
## a connection lost mid-shot reopens from the snapshot kept at the last shot boundary, cues again
## the finished shot after it (as the chunks it made), the shot in progress (from its start, as
## WAIT) and holds the queued cut and what follows until that shot starts; with no snapshot yet a
## new story opens with the shot in progress and the queued cue; closed "server draining" resumes
## too; a user's close does not; a session that drops again before the replayed shot started
## still holds the cut (scenario "resume_twice").
## args: {"url": the scripted gateway's ws://.../v1/direct}

var _base := ""


func run_tests() -> void:
	_base = args().get("url", "")
	check(_base.begins_with("ws://"), "gateway URL given")
	await _from_snapshot()
	await _without_snapshot()
	await _twice()


## [param n] bytes, as test_story.gd's blob.
static func blob(n: int) -> PackedByteArray:
	var out := PackedByteArray()
	out.resize(n)
	for i in n:
		out[i] = (i * 31 + 7) % 256
	return out


func _client(scenario: String) -> ShotStreamClient:
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.log_errors = false
	client.resume_story = true
	client.server_url = "%s?s=%s" % [_base, scenario]
	client.global_caption = "A harbour at dawn."
	client.story_seed = 11
	client.reconnect_initial_s = 0.05
	add_child(client)
	return client


func _watch(client: ShotStreamClient) -> Dictionary:
	var log := {
		"sessions": [], "reasons": [], "errors": [], "resumed": [], "dropped": [], "started": []
	}
	client.connected.connect(func(s: Dictionary) -> void: log["sessions"].append(s["session_id"]))
	client.disconnected.connect(func(r: String) -> void: log["reasons"].append(r))
	client.error_received.connect(
		func(_code: int, m: String, fatal: bool) -> void:
			log["errors"].append(("F " if fatal else "") + m)
	)
	client.story_resumed.connect(
		func(from_snapshot: bool, next_shot: int, reason: String) -> void:
			log["resumed"].append([from_snapshot, next_shot, reason, log["sessions"].size()])
	)
	client.cue_dropped.connect(func(id: String, r: String) -> void: log["dropped"].append([id, r]))
	client.shot_started.connect(
		func(s: Dictionary) -> void:
			log["started"].append(
				"%s %s %d" % [client.session["session_id"], s["event_id"], s["shot_index"]]
			)
	)
	return log


## Session 1: shot a (0) ends, its snapshot (next shot 1) arrives; b (1) is cut after 1 chunk by c
## (2), in progress when the connection drops with d, e (a cut: d is dropped) and f queued.
## Session 2 opens from the snapshot: b (1 chunk), c (from its start), then, once c started, e, f.
func _from_snapshot() -> void:
	var client := _client("resume_snap")
	var log := _watch(client)
	client.shot_started.connect(
		func(s: Dictionary) -> void:
			if client.session["session_id"] == "resume_snap-1" and s["event_id"] == "b":
				client.cut("c: the storm breaks", "c", 2, PackedStringArray(), 1)
			elif client.session["session_id"] == "resume_snap-1" and s["event_id"] == "c":
				client.cue("d: the crew shelters", "d", 1)
				client.cut("e: lightning", "e", 1, PackedStringArray(["flash"]), 1)
				client.cue("f: calm again", "f", 1)
			elif s["event_id"] == "c":
				client.close.call_deferred()
	)
	client.restored.connect(func(_n: int, _f: int) -> void: client.pause())
	client.cue("a: boats leave", "a", 1)
	client.cue("b: a gull dives", "b", 3)
	eq(OK, client.open_session(), "opened")
	if not await _wait(func() -> bool: return log["reasons"].size() >= 2, "the story to end"):
		client.queue_free()
		return
	eq(["resume_snap-1", "resume_snap-2"], log["sessions"], "a new session after the drop")
	eq(["connection lost", "client"], log["reasons"], "lost, then closed by the user: no resume")
	eq([[true, 1, "connection lost", 1]], log["resumed"], "resumed from the snapshot at shot 1")
	eq(
		[
			"resume_snap-1 a 0",
			"resume_snap-1 b 1",
			"resume_snap-1 c 2",
			"resume_snap-2 b 1",
			"resume_snap-2 c 2"
		],
		log["started"],
		"shots"
	)
	# d (dropped by e's cut) when the connection drops; e and f when the user closes session 2
	var over := [["d", "the session ended"], ["e", "the session ended"], ["f", "the session ended"]]
	eq(over, log["dropped"], "b and c were not reported over: they played again")
	eq(blob(3000), client.snapshot, "the kept snapshot is what the new session continued")
	eq(1, log["errors"].size(), "the move is reported once: %s" % [log["errors"]])
	if log["errors"].size() == 1:
		check("Resuming the story" in log["errors"][0], log["errors"][0])
		check(not log["errors"][0].begins_with("F "), "not fatal")
	eq(1, client.reconnects, "one reconnect")
	eq(ShotStreamClient.State.DISCONNECTED, client.state, "closed at the end")
	client.queue_free()


## Session 1: a (2 chunks) starts, b is queued, the connection drops before any snapshot: session
## 2 is a new story with a and b; the server drains it before a starts: session 3 the same; the
## user closes it after a started.
func _without_snapshot() -> void:
	var client := _client("resume_fresh")
	var log := _watch(client)
	client.chunk_received.connect(
		func(_c: Dictionary) -> void:
			if client.session["session_id"] == "resume_fresh-3":
				client.close.call_deferred()
	)
	client.cue("a: the market opens", "a", 2)
	client.cue("b: a thief runs", "b")
	eq(OK, client.open_session(), "opened")
	if not await _wait(func() -> bool: return log["reasons"].size() >= 3, "the story to end"):
		client.queue_free()
		return
	eq(["resume_fresh-1", "resume_fresh-2", "resume_fresh-3"], log["sessions"], "sessions")
	eq(["connection lost", "server draining", "client"], log["reasons"], "reasons")
	eq(
		[[false, 0, "connection lost", 1], [false, 0, "server draining", 2]],
		log["resumed"],
		"new stories, said so"
	)
	eq(["resume_fresh-1 a 0", "resume_fresh-3 a 0"], log["started"], "a plays again from shot 0")
	eq([["b", "the session ended"]], log["dropped"], "b is over only when the user closes")
	eq(PackedByteArray(), client.snapshot, "no snapshot")
	eq(2, log["errors"].size(), "each move reported: %s" % [log["errors"]])
	for e: String in log["errors"]:
		check(e.begins_with("ShotStreamClient: ") and "No snapshot of the story yet" in e, e)
	eq(ShotStreamClient.State.DISCONNECTED, client.state, "closed at the end")
	client.queue_free()


## Session 1: a (0) ends with its snapshot, b (1) starts, c (a cut) is queued, the connection drops;
## session 2 (from the snapshot) gets b and drops before b starts; session 3 gets b, and c only once
## b started (a replayed shot that has not started yet is still one: c must not cut it).
func _twice() -> void:
	var client := _client("resume_twice")
	var log := _watch(client)
	client.shot_started.connect(
		func(s: Dictionary) -> void:
			if client.session["session_id"] == "resume_twice-1" and s["event_id"] == "b":
				client.cut("c: the bridge falls", "c", 1, PackedStringArray(), 1)
			elif client.session["session_id"] == "resume_twice-3":
				client.close.call_deferred()
	)
	client.restored.connect(func(_n: int, _f: int) -> void: client.pause())
	client.cue("a: a bridge", "a", 1)
	client.cue("b: a cart crosses", "b", 2)
	eq(OK, client.open_session(), "opened")
	if not await _wait(func() -> bool: return log["reasons"].size() >= 3, "the story to end"):
		client.queue_free()
		return
	eq(["connection lost", "connection lost", "client"], log["reasons"], "two drops, then closed")
	eq(
		[[true, 1, "connection lost", 1], [true, 1, "connection lost", 2]],
		log["resumed"],
		"resumed twice from the same snapshot"
	)
	eq(["c", "the session ended"], log["dropped"].back(), "c is over when the user closes")
	eq(1, log["dropped"].size(), "only c: %s" % [log["dropped"]])
	client.queue_free()
