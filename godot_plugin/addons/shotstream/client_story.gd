@tool
extends RefCounted
## The story side of a [ShotStreamClient] (its snapshots, forks and cue logs), kept apart from
## the connection code: how a session starts (new, from a snapshot, or forking another session),
## the snapshot's remaining parts after [code]opened[/code], and the [code]snapshot[/code],
## [code]restored[/code] and [code]cue_log[/code] messages. The client's own methods and signals
## are the API; this is internal.

## The size of the parts a snapshot is sent in (1 .. 32 KiB; a test seam: smaller parts make a
## small snapshot travel in several).
var part_bytes := ShotStreamSnapshotTransfer.MAX_UPLOAD_PART_BYTES
## Puts together the snapshot the server sends.
var incoming := ShotStreamSnapshotTransfer.new()

var _client: ShotStreamClient
var _upload := PackedByteArray()  # the snapshot whose parts are being sent
var _next_part := 0  # its next part to send (0: none)
var _cue_log: Dictionary = {}
var _cue_log_on_its_way := false
var _cue_log_again := false


func _init(client: ShotStreamClient) -> void:
	_client = client


## The [code]open[/code] message for the OpenSession [param fields]: with the first part of the
## client's snapshot, or forking its fork_session_id (the story's decoder is then its own: the
## decoder is left unset, as asking for another one would be refused).
func open_message(fields: Dictionary) -> String:
	var data := _client.snapshot
	var first := {}
	var fork := {}
	if not data.is_empty():
		first = ShotStreamSnapshotTransfer.part(data, 0, -1, part_bytes)
	elif not _client.fork_session_id.is_empty():
		fork = {"session_id": _client.fork_session_id, "wait_for_boundary": true}
	if not (first.is_empty() and fork.is_empty()):
		fields.erase("decoder")
		fields.erase("global_caption")
		fields.erase("seed")
	return ShotStreamSnapshotTransfer.open_message(fields, first, fork)


## Why the client cannot open its session as set up ("" when it can).
func start_problem() -> String:
	if _client.snapshot.is_empty():
		return ""
	if part_bytes < 1 or part_bytes > ShotStreamSnapshotTransfer.MAX_UPLOAD_PART_BYTES:
		return "snapshot parts hold 1..%d bytes" % ShotStreamSnapshotTransfer.MAX_UPLOAD_PART_BYTES
	if _client.snapshot.size() > _client.max_snapshot_bytes:
		return (
			"the snapshot is %d bytes, more than max_snapshot_bytes (%d)"
			% [_client.snapshot.size(), _client.max_snapshot_bytes]
		)
	return ""


## The session opened: a new session's story starts clean; the rest of the snapshot follows.
func on_opened() -> void:
	incoming.reset()
	_cue_log = {}
	_cue_log_on_its_way = false
	_cue_log_again = false
	_upload = _client.snapshot
	_next_part = 0 if _upload.is_empty() else 1
	pump()


## Sends the snapshot's next parts while the socket has room for them (a [WebSocketPeer] refuses a
## message its outbound buffer cannot hold; a browser's WebSocket buffers everything): called
## when the session opens and at every poll, until every part is sent.
func pump() -> void:
	if _next_part == 0:
		return
	if not _client.is_session_open():
		_next_part = 0
		return
	var count := ShotStreamSnapshotTransfer.part_count(_upload, part_bytes)
	var ws: Variant = _client._ws
	while _next_part < count:
		var text := ShotStreamProtocol.encode_client(
			"snapshot_part", ShotStreamSnapshotTransfer.part(_upload, _next_part, -1, part_bytes)
		)
		var buffered: int = ws.get_current_outbound_buffered_amount() if ws is WebSocketPeer else 0
		if buffered > 0 and buffered + text.length() >= ws.outbound_buffer_size:
			return  # the next poll goes on
		_client._send(text)
		_next_part += 1
	_next_part = 0
	_upload = PackedByteArray()


## Asks for the story's snapshot.
func request_snapshot(wait_for_boundary: bool) -> void:
	var text := ShotStreamProtocol.encode_client(
		"snapshot", {"wait_for_boundary": wait_for_boundary}
	)
	_client._send_if_open(text, "request_snapshot")


## Asks for the cue log (its pages in turn); one on its way is asked for again once it is in.
func request_cue_log() -> void:
	if not _client.is_session_open():
		_client._send_if_open("", "request_cue_log")
		return
	if _cue_log_on_its_way:
		_cue_log_again = true
		return
	_cue_log = {}
	_cue_log_on_its_way = true
	_client._send(ShotStreamProtocol.encode_client("cue_log", {"from_shot": 0}))


## Handles a story message from the server ([param kind] snapshot, restored or cue_log).
func handle(kind: String, body: Dictionary) -> void:
	match kind:
		"snapshot":
			incoming.max_bytes = _client.max_snapshot_bytes
			var r := incoming.add(body)
			if r["error"] != "":
				_client._report(0, "ShotStreamClient: snapshot dropped: " + r["error"])
			elif not r["data"].is_empty():
				_client.snapshot_ready.emit(r["data"], body["next_shot_index"])
		"restored":
			_client.restored.emit(body["next_shot_index"], body["story_frames"])
		"cue_log":
			_on_cue_log_page(body)


func _on_cue_log_page(page: Dictionary) -> void:
	var r := ShotStreamSnapshotTransfer.merge_cue_log_page(_cue_log, page)
	if r["error"] != "":
		_cue_log = {}
		_cue_log_on_its_way = false
		_client._report(0, "ShotStreamClient: cue log dropped: " + r["error"])
		return
	if r["next_shot"] > 0:
		_cue_log_on_its_way = true
		_client._send(ShotStreamProtocol.encode_client("cue_log", {"from_shot": r["next_shot"]}))
		return
	var log := _cue_log
	_cue_log = {}
	_cue_log_on_its_way = false
	_client.cue_log_ready.emit(log)
	if _cue_log_again:
		_cue_log_again = false
		request_cue_log()
