@tool
class_name ShotStreamClient
extends Node
## A ShotStream story session over the service's WebSocket engine gateway.
##
## Opens [code]ws://HOST:PORT/v1/direct[/code] with a [WebSocketPeer] (no threads, no native code:
## works in every export target, web included), sends [code]open[/code] and turns the server's
## [code]shotstream.v1[/code] messages into signals. Cues become shots; each shot arrives as chunks
## of frames ([signal chunk_received]) that a [ShotStreamPlayer] can show.[br][br]
## [b]Credits[/b]: the server sends at most [member max_chunks_in_flight] chunks before they are
## acknowledged. With a [member player], a chunk is acked once the player has presented its last
## frame, so generation follows playback and nothing piles up. Without one, a chunk is acked right
## after [signal chunk_received] (or by you with [method ack] when [member manual_ack] is on).
## [br][br]
## [b]Connection[/b]: polled from [method Node._process] (or call [method poll] yourself with
## [member auto_poll] off). A failed connect is retried with exponential backoff
## ([member reconnect_initial_s] doubling up to [member reconnect_max_s], at most
## [member reconnect_max_retries] times). A session that drops after it opened is reopened as a
## [b]new[/b] session (a story cannot resume: the server freed its state); cues you send while no
## session is open are queued and sent when the next one opens. A fatal server error (e.g.
## RESOURCE_EXHAUSTED: too many sessions) is not retried. Errors go to the Output panel and to
## [signal error_received].

## The session opened: [param session] is the SessionOpened message (session_id, width, height,
## fps, frames_first_chunk, frames_per_chunk, max_chunks_in_flight, model, random_weights, ...).
signal connected(session: Dictionary)
## The session ended: "client" (after [method close]), "server shutdown", "error", "connection
## lost", "unreachable" or "aborted".
signal disconnected(reason: String)
## The connection [enum State] changed.
signal state_changed(state: int)
## The server queued a cue ([param queue_position] 0 = starts next).
signal cue_accepted(event_id: String, queue_position: int)
## A shot started (ShotStarted: event_id, tags, shot_index, num_chunks, num_frames, ...).
signal shot_started(shot: Dictionary)
## A chunk of frames arrived (FrameChunk: chunk_seq, event_id, shot_index, chunk_index,
## num_frames, width, height, frame_format, last_in_shot, timing, and [code]pixels[/code]:
## num_frames frames, row-major, top row first).
signal chunk_received(chunk: Dictionary)
## A shot ended (ShotFinished: event_id, shot_index, chunks, frames, cut).
signal shot_finished(shot: Dictionary)
## Session and GPU statistics (Stats: chunks_sent, frames_sent, chunk_ms_mean, fps,
## queued_cues, chunks_in_flight, paused, sessions, gpu_memory_used_bytes).
signal stats_received(stats: Dictionary)
## The first chunk of a cue arrived [param latency_ms] after the cue was sent.
signal cue_latency(event_id: String, latency_ms: float)
## Recording started; [param path] is where the MP4 will be on the server's host.
signal take_started(take_name: String, path: String)
## Recording finished (TakeSaved: name, path, frames, bytes, duration_s).
signal take_saved(take: Dictionary)
## An error: [param code] is a grpc status code from the server (3 INVALID_ARGUMENT, 8
## RESOURCE_EXHAUSTED, 9 FAILED_PRECONDITION, ...) or 0 for a local problem; [param fatal]: the
## session is over.
signal error_received(code: int, message: String, fatal: bool)

## Connection states.
enum State {
	DISCONNECTED,  ## no connection
	CONNECTING,  ## WebSocket handshake in progress
	OPENING,  ## [code]open[/code] sent, waiting for [code]opened[/code]
	OPEN,  ## session open: cues, chunks, acks
	CLOSING,  ## [code]close[/code] sent (or [code]closed[/code] received), waiting for the socket
	WAITING_TO_RETRY,  ## a connect failed or the session dropped; retrying after a delay
}

## The gateway's default address (`shotstream serve` on this machine).
const DEFAULT_URL := "ws://127.0.0.1:50052/v1/direct"

## WebSocket URL of the gateway: [code]ws://HOST:PORT/v1/direct[/code]
## ([code]wss://[/code] with TLS).
@export var server_url := DEFAULT_URL
## Bearer token when the server has one (sent as [code]?token=[/code], which web builds need).
@export var token := ""
## The story's global caption, prefixed to every shot prompt.
@export_multiline var global_caption := ""
## Story seed: the same seed and the same cues give the same frames (a uint64; see
## [ShotStreamProtocol] for values of 2^63 and above).
@export var story_seed := 0
## Pixel format of the frames: RGBA8 (texture-friendly, the default) or RGB8.
@export var frame_format: ShotStreamProtocol.FrameFormat = ShotStreamProtocol.FrameFormat.RGBA8
## Chunks the server may send before they are acked (0 = server default, 2).
@export_range(0, 64) var max_chunks_in_flight := 2
## Name the server logs and limits sessions by; "" = "godot/<project name>".
@export var client_name := ""
## Open the session when the node enters the running game (never in the editor).
@export var connect_on_ready := true
## Shows the frames and paces the acks (optional).
@export var player: ShotStreamPlayer
## Off: chunks are acked automatically. On: call [method ack] with each chunk's chunk_seq.
@export var manual_ack := false

@export_group("Reconnect")
## Retry failed connects and reopen dropped sessions.
@export var auto_reconnect := true
## Delay before the first retry.
@export_range(0.0, 60.0, 0.05, "suffix:s") var reconnect_initial_s := 0.25
## Longest delay between retries (the delay doubles up to this).
@export_range(0.0, 600.0, 0.5, "suffix:s") var reconnect_max_s := 10.0
## Retries after a failure (negative: forever).
@export var reconnect_max_retries := 5
## Give up a WebSocket handshake after this long.
@export_range(0.5, 120.0, 0.5, "suffix:s") var connect_timeout_s := 10.0

@export_group("Advanced")
## Largest message the socket accepts (a 1.3B-model chunk is up to 19.2 MB).
@export var inbound_buffer_bytes := 1 << 25
## Poll the socket from _process. Off: call [method poll] yourself.
@export var auto_poll := true
## Print errors and warnings to the Output panel (they always go to [signal error_received]).
@export var log_errors := true

## The connection [enum State].
var state: State:
	get:
		return _state
## The open session (SessionOpened), {} when none.
var session: Dictionary:
	get:
		return _session
## The last Stats message, {} before the first.
var last_stats: Dictionary = {}
## Sessions reopened after a dropped connection.
var reconnects := 0

var _state := State.DISCONNECTED
var _session: Dictionary = {}
var _ws: WebSocketPeer
var _policy := ShotStreamReconnectPolicy.new()
var _retry := 0
var _retry_at_ms := 0
var _phase_started_ms := 0
var _user_closed := false
var _server_closed := false
var _close_reason := ""
var _was_opened := false
var _unsent: Array[String] = []
var _acks: Array[Array] = []
var _cue_counter := 0
var _cue_sent_us: Dictionary = {}


func _ready() -> void:
	if connect_on_ready and not Engine.is_editor_hint():
		open_session()


func _process(_delta: float) -> void:
	if auto_poll:
		poll()


func _exit_tree() -> void:
	if _state != State.DISCONNECTED:
		abort()


## Connects and opens a session (no-op unless [constant State.DISCONNECTED]). Returns OK or
## ERR_INVALID_PARAMETER for a bad URL.
func open_session() -> Error:
	if _state != State.DISCONNECTED:
		return OK
	if not (server_url.begins_with("ws://") or server_url.begins_with("wss://")):
		_report(
			0,
			(
				(
					'ShotStreamClient: bad server URL "%s": expected ws://HOST:PORT/v1/direct'
					+ " (`shotstream serve` listens on %s by default)"
				)
				% [server_url, DEFAULT_URL]
			),
			true
		)
		return ERR_INVALID_PARAMETER
	_policy = ShotStreamReconnectPolicy.new(
		reconnect_initial_s, reconnect_max_s, reconnect_max_retries
	)
	_retry = 0
	_user_closed = false
	_start_socket()
	return OK


## Asks the server to end the session ([signal disconnected] follows with "client"). Cancels a
## connect or retry in progress.
func close() -> void:
	match _state:
		State.OPEN:
			_user_closed = true
			_send(ShotStreamProtocol.close_message())
			_phase_started_ms = Time.get_ticks_msec()
			_set_state(State.CLOSING)
		State.DISCONNECTED, State.CLOSING:
			_user_closed = true
		_:
			_user_closed = true
			abort()


## Drops the connection at once (the server ends the session as if it had received close).
func abort() -> void:
	_user_closed = true
	if _ws != null:
		_ws.close()
		_ws = null
	_finish("aborted" if _close_reason == "" else _close_reason)


## Sends a shot for [param prompt]. [param event_id] "" = "godot-N"; [param num_chunks] 0 = the
## server's full shot; [param mode] "wait" (after the current and queued shots) or "cut" (drop
## queued cues, cut the current shot at its next chunk); [param tags] are echoed back. Sent now
## when the session is open, else queued until it opens. Returns the event id ("" on bad input).
func cue(
	prompt: String,
	event_id: String = "",
	num_chunks: int = 0,
	mode: String = "wait",
	tags: PackedStringArray = PackedStringArray()
) -> String:
	var cue_mode := ShotStreamProtocol.CueMode.WAIT
	match mode.to_lower():
		"wait":
			cue_mode = ShotStreamProtocol.CueMode.WAIT
		"cut":
			cue_mode = ShotStreamProtocol.CueMode.CUT
		_:
			_report(0, 'ShotStreamClient.cue: mode must be "wait" or "cut", got "%s"' % mode)
			return ""
	if prompt.strip_edges().is_empty():
		_report(0, "ShotStreamClient.cue: the prompt is empty: describe the shot")
		return ""
	if num_chunks < 0:
		_report(0, "ShotStreamClient.cue: num_chunks must be >= 0 (0 = full shot)")
		return ""
	if event_id.is_empty():
		_cue_counter += 1
		event_id = "godot-%d" % _cue_counter
	var text := ShotStreamProtocol.cue_message(event_id, prompt, num_chunks, cue_mode, tags)
	if text.is_empty():
		return ""
	if _state == State.OPEN:
		_cue_sent_us[event_id] = Time.get_ticks_usec()
		_send(text)
	else:
		_unsent.append(text)
	return event_id


## [method cue] with mode "cut".
func cut(
	prompt: String,
	event_id: String = "",
	num_chunks: int = 0,
	tags: PackedStringArray = PackedStringArray()
) -> String:
	return cue(prompt, event_id, num_chunks, "cut", tags)


## Stops generating after the chunk in progress (the GPU idles).
func pause() -> void:
	_send_if_open(ShotStreamProtocol.pause_message(), "pause")


## Resumes generating.
func resume() -> void:
	_send_if_open(ShotStreamProtocol.resume_message(), "resume")


## Records the session's frames, from the next chunk on, into an MP4 on the server's host
## ([param take_name]: 1-64 of A-Z a-z 0-9 - _ . or "" for a server-chosen name). Answered by
## [signal take_started], or [signal error_received] (e.g. 9 FAILED_PRECONDITION: already
## recording).
func start_take(take_name: String = "") -> void:
	_send_if_open(ShotStreamProtocol.start_take_message(take_name), "start_take")


## Finishes the take; answered by [signal take_saved].
func stop_take() -> void:
	_send_if_open(ShotStreamProtocol.stop_take_message(), "stop_take")


## Releases the credit of chunk [param chunk_seq] (only needed with [member manual_ack]).
func ack(chunk_seq: int) -> void:
	_send_if_open(ShotStreamProtocol.ack_message(chunk_seq), "ack")


## Client messages waiting for the session to open (JSON text, oldest first): the cues sent
## while no session was open.
func queued_messages() -> PackedStringArray:
	return PackedStringArray(_unsent)


## True while a session is open.
func is_session_open() -> bool:
	return _state == State.OPEN


## Services the socket: handshake, incoming messages, due acks and retries. Called every frame
## with [member auto_poll]; call it yourself otherwise.
func poll() -> void:
	match _state:
		State.DISCONNECTED:
			return
		State.WAITING_TO_RETRY:
			if Time.get_ticks_msec() >= _retry_at_ms:
				_start_socket()
			return
	_poll_socket()
	_send_due_acks()


## The client name sent in open: [member client_name], or "godot/<project name>".
func effective_client_name() -> String:
	if not client_name.is_empty():
		return client_name
	return "godot/" + str(ProjectSettings.get_setting("application/config/name", "Game"))


func _start_socket() -> void:
	_ws = WebSocketPeer.new()
	_ws.inbound_buffer_size = inbound_buffer_bytes
	_ws.outbound_buffer_size = 1 << 20
	_ws.max_queued_packets = 4096
	_server_closed = false
	_close_reason = ""
	_was_opened = false
	var url := server_url
	if not token.is_empty():
		url += ("&" if "?" in url else "?") + "token=" + token.uri_encode()
	_phase_started_ms = Time.get_ticks_msec()
	_set_state(State.CONNECTING)
	var err := _ws.connect_to_url(url)
	if err != OK:
		_ws = null
		_on_closed(-1, error_string(err))


func _poll_socket() -> void:
	if _ws == null:
		return
	_ws.poll()
	var ws_state := _ws.get_ready_state()
	if ws_state == WebSocketPeer.STATE_CONNECTING:
		if Time.get_ticks_msec() - _phase_started_ms > int(connect_timeout_s * 1000.0):
			_ws.close()
			_ws = null
			_on_closed(-1, "handshake timed out after %.1f s" % connect_timeout_s)
		return
	if ws_state == WebSocketPeer.STATE_OPEN and _state == State.CONNECTING:
		_set_state(State.OPENING)
		_send(
			ShotStreamProtocol.open_message(
				global_caption,
				story_seed,
				effective_client_name(),
				frame_format,
				max_chunks_in_flight
			)
		)
	while _ws != null and _ws.get_available_packet_count() > 0:
		var data := _ws.get_packet()
		var is_text := _ws.was_string_packet()  # after get_packet(), not before
		_handle_packet(data, is_text)
	if _ws == null:
		return
	if ws_state == WebSocketPeer.STATE_CLOSED:
		var code := _ws.get_close_code()
		var reason := _ws.get_close_reason()
		_ws = null
		_on_closed(code, reason)
	elif _state == State.CLOSING and Time.get_ticks_msec() - _phase_started_ms > 5000:
		_ws.close()  # the server did not end the session in time: close from our side


func _handle_packet(data: PackedByteArray, is_text: bool) -> void:
	var m: Dictionary
	if is_text:
		m = ShotStreamProtocol.decode_server_text(data.get_string_from_utf8())
	else:
		m = ShotStreamProtocol.decode_server_binary(data)
	if m["error"] != "":
		_report(0, "ShotStreamClient: malformed message from the server: " + m["error"])
		return
	var kind: String = m["kind"]
	if kind.is_empty():
		return  # a message kind this addon does not know (a newer server): skip it
	var body: Dictionary = m["message"]
	match kind:
		"opened":
			_on_opened(body)
		"cue_accepted":
			cue_accepted.emit(body["event_id"], body["queue_position"])
		"shot_started":
			shot_started.emit(body)
		"chunk":
			_on_chunk(body)
		"shot_finished":
			shot_finished.emit(body)
		"stats":
			last_stats = body
			stats_received.emit(body)
		"error":
			_on_server_error(body)
		"closed":
			_server_closed = true
			_close_reason = body["reason"]
			_phase_started_ms = Time.get_ticks_msec()
			_set_state(State.CLOSING)
		"take_started":
			take_started.emit(body["name"], body["path"])
		"take_saved":
			take_saved.emit(body)


func _on_opened(opened: Dictionary) -> void:
	_session = opened
	_was_opened = true
	_retry = 0
	_acks.clear()
	_cue_sent_us.clear()
	if opened["protocol_version"] != ShotStreamProtocol.PROTOCOL_VERSION:
		_report(
			0,
			(
				"ShotStreamClient: the server speaks protocol %d, this addon %d: update one of them"
				% [opened["protocol_version"], ShotStreamProtocol.PROTOCOL_VERSION]
			)
		)
	if player != null and is_instance_valid(player):
		player.configure_for_session(opened)
	_set_state(State.OPEN)
	connected.emit(opened)
	var pending := _unsent.duplicate()
	_unsent.clear()
	for text: String in pending:
		if _state != State.OPEN:
			_unsent.append(text)
			continue
		var parsed := ShotStreamProtocol.decode_client_text(text)
		if parsed["kind"] == "cue":
			_cue_sent_us[parsed["message"]["event_id"]] = Time.get_ticks_usec()
		_send(text)


func _on_chunk(chunk: Dictionary) -> void:
	var last := -1
	if player != null and is_instance_valid(player):
		var n: int = chunk["num_frames"]
		var accepted := player.push_chunk(chunk)
		if accepted < n:
			_report(
				0,
				(
					"ShotStreamClient: the player's buffer is full: dropped %d frames of chunk %s"
					% [n - accepted, ShotStreamProtocol.u64_to_string(chunk["chunk_seq"])]
				)
			)
		last = player.pushed_frames - 1
	var event_id: String = chunk["event_id"]
	if _cue_sent_us.has(event_id):
		var ms := (Time.get_ticks_usec() - int(_cue_sent_us[event_id])) / 1000.0
		_cue_sent_us.erase(event_id)
		cue_latency.emit(event_id, ms)
	chunk_received.emit(chunk)
	if not manual_ack:
		_acks.append([chunk["chunk_seq"], last])
		_send_due_acks()


func _send_due_acks() -> void:
	while not _acks.is_empty() and _state == State.OPEN:
		var a: Array = _acks[0]
		if a[1] >= 0 and player != null and is_instance_valid(player):
			if player.presented_frame_index < a[1]:
				return
		_acks.pop_front()
		_send(ShotStreamProtocol.ack_message(a[0]))


func _on_server_error(e: Dictionary) -> void:
	var code: int = e["code"]
	var fatal: bool = e["fatal"]
	var about: String = "" if e["event_id"] == "" else ' (cue "%s")' % e["event_id"]
	var text := (
		"ShotStream server error %s%s: %s"
		% [ShotStreamProtocol.status_name(code), about, e["message"]]
	)
	if fatal:
		_server_closed = true
		_close_reason = "error"
	_report(code, text, fatal, e["message"])


func _on_closed(code: int, reason: String) -> void:
	_session = {}
	_acks.clear()
	if _user_closed or _server_closed:
		_finish("client" if _user_closed and _close_reason == "" else _close_reason)
		return
	var detail := "WebSocket close code %d%s" % [code, "" if reason.is_empty() else ", " + reason]
	if not _was_opened:
		var text := (
			(
				"ShotStreamClient: could not reach %s (%s). Is `shotstream serve` running there,"
				+ " and are the host, the gateway port (default 50052), the path /v1/direct and"
				+ " the token right?"
			)
			% [server_url, detail]
		)
		if auto_reconnect and _policy.should_retry(_retry):
			var delay := _policy.delay_for(_retry)
			_retry += 1
			if log_errors:
				push_warning("%s Retrying in %.2f s (retry %d)." % [text, delay, _retry])
			_schedule_retry(delay)
		else:
			_report(0, text, true)
			_finish("unreachable")
		return
	var lost := (
		"ShotStreamClient: the connection to %s was lost (%s). A story cannot resume: %s"
		% [
			server_url,
			detail,
			"reconnecting as a new session." if auto_reconnect else "the session is over."
		]
	)
	_report(0, lost, not auto_reconnect)
	if auto_reconnect:
		reconnects += 1
		_retry = 0
		_schedule_retry(_policy.delay_for(0))
	else:
		_set_state(State.DISCONNECTED)
	disconnected.emit("connection lost")


func _schedule_retry(delay_s: float) -> void:
	_retry_at_ms = Time.get_ticks_msec() + int(delay_s * 1000.0)
	_set_state(State.WAITING_TO_RETRY)


func _finish(reason: String) -> void:
	_session = {}
	_acks.clear()
	if _state == State.DISCONNECTED:
		return
	_set_state(State.DISCONNECTED)
	disconnected.emit(reason)


func _send_if_open(text: String, what: String) -> void:
	if _state != State.OPEN:
		_report(0, "ShotStreamClient.%s: no open session (call open_session() first)" % what)
		return
	_send(text)


func _send(text: String) -> void:
	if text.is_empty() or _ws == null:
		return
	var err := _ws.send_text(text)
	if err != OK:
		_report(0, "ShotStreamClient: sending failed (%s)" % error_string(err))


func _set_state(s: State) -> void:
	if s == _state:
		return
	_state = s
	state_changed.emit(s)


func _report(code: int, text: String, fatal: bool = false, message: String = "") -> void:
	if log_errors:
		push_error(text)
	error_received.emit(code, text if message.is_empty() else message, fatal)
