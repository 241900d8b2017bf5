@tool
extends RefCounted
## What a [ShotStreamClient] with [member ShotStreamClient.resume_story] on knows of its story, to
## continue it in a new session when its server goes away: the cues (which became which shot, and
## how many chunks a finished one made) and the last snapshot, asked for with wait_for_boundary as
## every shot starts (so the server takes it when that shot ends). The same design as the Python
## SDK's ResumingSession (service/sdk/resume.py). Internal: the client's property and its
## [signal ShotStreamClient.story_resumed] are the API.

## Why a session ended that makes the story move ([code]closed[/code] reasons).
const SERVER_GONE_REASONS: Array[String] = ["server draining", "server shutdown"]

## The cues given since the story began, oldest first: {event_id, prompt, num_chunks, mode
## ("wait"/"cut"), tags, at_chunk, shot_index (-1: not started), chunks (-1: not finished),
## dropped}.
var cues: Array[Dictionary] = []
## The last snapshot (empty: none yet) and the shot it continues with.
var kept := PackedByteArray()
var kept_next := 0
## Cues of a new session held until the replayed shot [member release_on] starts there (a cut
## would drop that shot from the server's queue before it starts).
var held: Array[Dictionary] = []
var release_on := ""

var _client: ShotStreamClient
var _pending: Array = []  # [from_snapshot, next_shot_index, reason] of the move in progress
var _asked := false  # a snapshot asked for in this session has not arrived yet
var _ask_again := false  # a shot started meanwhile: ask once it arrives


func _init(client: ShotStreamClient) -> void:
	_client = client
	client.shot_started.connect(_on_shot_started)
	client.shot_finished.connect(_on_shot_finished)
	client.cue_dropped.connect(_on_cue_dropped)
	client.snapshot_ready.connect(_on_snapshot_ready)
	client.restored.connect(_on_restored)
	client.connected.connect(_on_connected)


## The story is over (the client finished): forget it.
func reset() -> void:
	cues.clear()
	held.clear()
	release_on = ""
	kept = PackedByteArray()
	kept_next = 0
	_pending = []


## Records a cue the client was given; true when it must wait in [member held] (not sent now).
func take_cue(fields: Dictionary) -> bool:
	if not _client.resume_story:
		return false
	if fields["mode"] == "cut":
		for c: Dictionary in cues:
			if c["shot_index"] < 0 and not c["dropped"]:
				c["dropped"] = true  # the server drops queued cues on a cut
	var c := fields.duplicate()
	c.merge({"shot_index": -1, "chunks": -1, "dropped": false})
	cues.append(c)
	if release_on.is_empty():
		return false
	held.append(c)
	return true


## True when a session that ended this way ([param ending]: the reason known, "" for a lost
## connection) moves the story to a new session.
func moves(ending: String, was_opened: bool) -> bool:
	if not (_client.resume_story and _client.auto_reconnect):
		return false
	return ending in SERVER_GONE_REASONS if not ending.is_empty() else was_opened


## True when cue [param event_id], sent in the session that ended, is cued again in the next.
func recues(event_id: String) -> bool:
	for c: Dictionary in to_recue():
		if c["event_id"] == event_id:
			return true
	return false


## The cues a new session must get, in order (as the SDK's _Story.to_recue).
func to_recue() -> Array[Dictionary]:
	var have := not _snapshot().is_empty()
	var out: Array[Dictionary] = []
	for c: Dictionary in cues:
		if c["dropped"]:
			continue
		if c["shot_index"] < 0:
			out.append(c)
		elif have and c["shot_index"] >= kept_next:
			out.append(c)
		elif not have and c["chunks"] < 0:  # no snapshot: a new story from the shot in progress
			out.append(c)
	return out


## The session is gone ([param reason]): sets up the next open to continue the story (from the
## last snapshot, or as a new story with the same caption and seed) and queues the cues again.
## Returns whether it continues from a snapshot.
func prepare(reason: String) -> bool:
	var data := _snapshot()
	var from_snapshot := not data.is_empty()
	if from_snapshot:
		_client.snapshot = data
	_client.fork_session_id = ""  # a fork of a session on the server that went away
	var recue := to_recue()
	if not from_snapshot:
		for c: Dictionary in cues:
			if not recue.has(c):
				c["dropped"] = true  # a new story: its shots count from 0 again
	var replayed := recue.filter(
		func(c: Dictionary) -> bool: return c["shot_index"] >= 0 or c.get("replay", false)
	)
	release_on = "" if replayed.is_empty() else replayed[-1]["event_id"]
	held.clear()
	_client._unsent.clear()  # every cue of it is in [member cues]
	for c: Dictionary in recue:
		var wait: bool = not replayed.is_empty() and not replayed.has(c)
		if wait and (not held.is_empty() or c["mode"] == "cut"):
			held.append(c)
		else:
			_client._unsent.append(_message(c))
	if held.is_empty():
		release_on = ""
	_pending = [from_snapshot, kept_next if from_snapshot else 0, reason]
	return from_snapshot


func _snapshot() -> PackedByteArray:
	return kept if not kept.is_empty() else _client.snapshot


## The cue message that sends [param c] again, which becomes that record: a finished shot is
## replayed as a shot of the chunks it made, one that had started plays from its start (WAIT).
func _message(c: Dictionary) -> String:
	if c["chunks"] >= 0:
		c["num_chunks"] = c["chunks"]
	if c["shot_index"] >= 0:
		c["mode"] = "wait"
		c["at_chunk"] = 0
		c["replay"] = true  # a shot again until it starts, should this session go too
	c["shot_index"] = -1
	c["chunks"] = -1
	var mode := (
		ShotStreamProtocol.CueMode.CUT if c["mode"] == "cut" else ShotStreamProtocol.CueMode.WAIT
	)
	return ShotStreamProtocol.cue_message(
		c["event_id"], c["prompt"], c["num_chunks"], mode, c["tags"], c["at_chunk"]
	)


func _on_connected(_session: Dictionary) -> void:
	_asked = false
	_ask_again = false
	if _pending.is_empty():
		return
	var p := _pending
	_pending = []
	_client.story_resumed.emit(p[0], p[1], p[2])


func _on_shot_started(shot: Dictionary) -> void:
	if not _client.resume_story:
		return
	for c: Dictionary in cues:
		if c["event_id"] == shot["event_id"] and c["chunks"] < 0 and not c["dropped"]:
			c["shot_index"] = shot["shot_index"]
			c.erase("replay")
			break
	if not release_on.is_empty() and shot["event_id"] == release_on:
		var out := held
		held = []
		release_on = ""
		for c: Dictionary in out:
			_client._send_or_queue(c["event_id"], _message(c))
	# the state at this shot's end, before the next starts: where a move continues from
	if _asked:
		_ask_again = true  # one snapshot at a time per session
	else:
		_asked = true
		_client.request_snapshot(true)


func _on_shot_finished(shot: Dictionary) -> void:
	for c: Dictionary in cues:
		if c["event_id"] == shot["event_id"] and c["shot_index"] == shot["shot_index"]:
			c["chunks"] = shot["chunks"]


func _on_cue_dropped(event_id: String, reason: String) -> void:
	if reason == "the session ended" or reason == "not sent":
		return
	for c: Dictionary in cues:
		if c["event_id"] == event_id and c["shot_index"] < 0:
			c["dropped"] = true  # refused by the server, or dropped by a cut


func _on_snapshot_ready(data: PackedByteArray, next_shot_index: int) -> void:
	_asked = false
	if not _client.resume_story:
		return
	kept = data
	kept_next = next_shot_index
	# cues of shots before it are never sent again
	var left: Array[Dictionary] = []
	for c: Dictionary in cues:
		if not c["dropped"] and (c["shot_index"] < 0 or c["shot_index"] >= next_shot_index):
			left.append(c)
	cues = left
	if _ask_again and _client.is_session_open():
		_ask_again = false
		_asked = true
		_client.request_snapshot(true)


func _on_restored(next_shot_index: int, _story_frames: int) -> void:
	if kept.is_empty():
		kept_next = next_shot_index  # the shot the client's own snapshot continues with
