@tool
@icon("res://addons/shotstream/icons/client.svg")
class_name ShotStreamClient
extends Node
## A ShotStream story session over the service's WebSocket engine gateway.
##
## Opens [code]ws://HOST:PORT/v1/direct[/code] with a [WebSocketPeer] (on the web, the browser's
## own WebSocket: [member browser_socket]; no threads, no native code), sends [code]open[/code] and
## turns the server's [code]shotstream.v1[/code] messages into signals. Cues become shots; each shot
## arrives as chunks of frames ([signal chunk_received]) that a [ShotStreamPlayer] can show.[br][br]
## [b]Credits[/b]: the server sends at most [member max_chunks_in_flight] chunks before they are
## acknowledged. With a [member player], a chunk is acked once the player has presented its last
## frame, so generation follows playback and nothing piles up. Without one, a chunk is acked right
## after [signal chunk_received] (or by you with [method ack] when [member manual_ack] is on). A
## chunk that never arrived (a gap in chunk_seq, which counts up from 1), could not be decoded or
## carries no playable pixels is reported and acked at once, even with [member manual_ack], so
## its credit comes back.[br][br]
## [b]Connection[/b]: polled from [method Node._process] (or call [method poll] yourself with
## [member auto_poll] off). The node processes while the game is paused
## ([constant Node.PROCESS_MODE_ALWAYS], set in [method Object._init]; a [ShotStreamPlayer] stays
## pausable), so pausing does not starve the connection. Leaving the tree (reparenting, moving a
## dock) keeps the session; freeing the node closes it. A failed connect is retried with
## exponential backoff ([member reconnect_initial_s] doubling up to [member reconnect_max_s], at
## most [member reconnect_max_retries] times); a web build cannot tell a refused handshake (wrong
## token or path) from an unreachable server, so both are retried the same way. A session that
## drops after it opened, or that the server ends with [code]closed[/code] "server shutdown" (it
## may be restarting), is reopened as a [b]new[/b] session (the server freed its story; see
## [member resume_story]); cues sent while no session is open are queued (at most
## [constant MAX_QUEUED_CUES]) and sent when the next one opens. A fatal server error (e.g.
## RESOURCE_EXHAUSTED: too many sessions) is not retried. After [code]closed[/code] or a fatal
## error the client closes the WebSocket itself (some WebSocket stacks drop messages that arrive
## just before a close frame). Errors go to the Output panel and to [signal error_received].

## The session opened: [param session] is the SessionOpened message (session_id, width, height,
## fps, frames_first_chunk, frames_per_chunk, max_chunks_per_shot, max_chunks_in_flight, model,
## random_weights, decoder: the [enum ShotStreamProtocol.Decoder] the server chose, ...).
signal connected(session: Dictionary)
## The session ended: "client" (after [method close]), "server shutdown" (a reconnect follows
## when [member auto_reconnect] is on), "error" (a fatal error), "connection lost" (a reconnect
## follows when [member auto_reconnect] is on), "unreachable", "aborted" (after [method abort]) or
## another reason the server gave in [code]closed[/code].
signal disconnected(reason: String)
## The connection [enum State] changed.
signal state_changed(state: int)
## The server queued a cue ([param queue_position] 0 = starts next).
signal cue_accepted(event_id: String, queue_position: int)
## A shot started (ShotStarted: event_id, tags, shot_index, num_chunks, num_frames, ...).
signal shot_started(shot: Dictionary)
## The cue [param event_id] will never play: the server refused it (its error's message), a cut
## dropped it while it was queued ("dropped by a cut": known when a later cue's shot starts), or
## the session ended or was closed before it started ("the session ended", "not sent").
signal cue_dropped(event_id: String, reason: String)
## A chunk of frames arrived (FrameChunk: chunk_seq, event_id, shot_index, chunk_index,
## num_frames, width, height, frame_format, last_in_shot, timing, and the frames: the received
## message itself, by reference (no copy), in [code]pixels[/code], the frames starting at byte
## [code]pixels_offset[/code]; [method ShotStreamProtocol.chunk_pixels] copies out just the frames:
## num_frames frames, row-major, top row first).
signal chunk_received(chunk: Dictionary)
## A shot ended (ShotFinished: event_id, shot_index, chunks, frames, cut).
signal shot_finished(shot: Dictionary)
## Session and GPU statistics (Stats: chunks_sent, frames_sent, chunk_ms_mean, fps,
## queued_cues, chunks_in_flight, paused, sessions, gpu_memory_used_bytes).
signal stats_received(stats: Dictionary)
## The first chunk of a cue arrived [param latency_ms] after the cue was sent.
signal cue_latency(event_id: String, latency_ms: float)
## Recording started; [param path] is where the MP4 will be on the server's host ([member take]
## has the whole TakeStarted, with the quality granted).
signal take_started(take_name: String, path: String)
## Recording finished (TakeSaved: name, path, frames, bytes, duration_s; for a FULL take also
## full_path and full_bytes, the MP4 re-decoded with the Wan VAE, sent once both files are written).
signal take_saved(take: Dictionary)
## The snapshot [method request_snapshot] asked for, every part in: keep [param data] unchanged
## (e.g. in a [ShotStreamSnapshot]); [param next_shot_index] is the shot the story continues with.
signal snapshot_ready(data: PackedByteArray, next_shot_index: int)
## A session opened from a [member snapshot] or a fork has its story: the next cue becomes shot
## [param next_shot_index]; [param story_frames] frames came before (chunks' story_frame go on).
signal restored(next_shot_index: int, story_frames: int)
## The cue log [method request_cue_log] asked for, its pages merged (CueLog: global_caption, seed,
## decoder, first_shot_index, dropped_shots, entries: [{cue, shot_index, chunks, cut, finished}]).
signal cue_log_ready(log: Dictionary)
## With [member resume_story]: the story moved to a new session after its server went away
## ([param reason]: "connection lost", "server draining" or "server shutdown"), continuing from
## the last shot boundary's snapshot at shot [param next_shot_index] ([param from_snapshot]), or,
## with no snapshot yet, as a new story (same caption and seed) from shot 0.
signal story_resumed(from_snapshot: bool, next_shot_index: int, reason: String)
## An error: [param code] is a grpc status code from the server (3 INVALID_ARGUMENT, 8
## RESOURCE_EXHAUSTED, 9 FAILED_PRECONDITION, ...) or 0 for a local problem; [param fatal]: the
## session is over for good (nothing is retried). A non-fatal error leaves the session open, except
## for a dropped connection or a server restart, after which a new session follows.
signal error_received(code: int, message: String, fatal: bool)

## Connection states.
enum State {
	DISCONNECTED,  ## no connection
	CONNECTING,  ## WebSocket handshake in progress
	OPENING,  ## [code]open[/code] sent, waiting for [code]opened[/code]
	OPEN,  ## session open: cues, chunks, acks
	CLOSING,  ## the session is ending ([code]close[/code] sent, or it ended): closing the socket
	WAITING_TO_RETRY,  ## a connect failed or the session dropped; retrying after a delay
}

## The gateway's default address (`shotstream serve` on this machine).
const DEFAULT_URL := "ws://127.0.0.1:50052/v1/direct"
## The largest client message the gateway accepts (its default max_control_message_bytes); it
## closes the connection on a bigger one, so [method cue] and [method open_session] refuse them.
const MAX_CLIENT_MESSAGE_BYTES := 65536
## Cues kept while no session is open; [method cue] refuses more.
const MAX_QUEUED_CUES := 64
## Credits the server grants when [member max_chunks_in_flight] is 0 (its default).
const SERVER_DEFAULT_CREDITS := 2
## Frame width of the largest model (Wan 2.1 T2V 1.3B), for the automatic inbound buffer.
const MODEL_WIDTH := 832
## Frame height of the largest model.
const MODEL_HEIGHT := 480
## Frames in the largest model's biggest chunk.
const MODEL_CHUNK_FRAMES := 12
## Inbound buffer room per chunk for its JSON header.
const CHUNK_HEADER_BYTES := 4096
## Inbound buffer room for the text messages (stats, shot events) that arrive between polls.
const TEXT_MESSAGES_BYTES := 262144
## Seconds between WebSocket pings on native builds of Godot 4.4+ (ignored where unsupported).
const HEARTBEAT_S := 10.0
## The browser's WebSocket that web builds use (see [member browser_socket]).
const BrowserSocket := preload("res://addons/shotstream/browser_socket.gd")
## The story side (snapshots, forks, cue logs), internal.
const ClientStory := preload("res://addons/shotstream/client_story.gd")
## The long texts the client reports, internal.
const Texts := preload("res://addons/shotstream/client_texts.gd")
## What the client knows of its story to resume it elsewhere, internal.
const ClientResume := preload("res://addons/shotstream/client_resume.gd")

## WebSocket URL of the gateway: [code]ws://HOST:PORT/v1/direct[/code]
## ([code]wss://[/code] with TLS).
@export var server_url := DEFAULT_URL:
	set(value):
		server_url = value
		update_configuration_warnings()
## Bearer token when the server has one: sent in the handshake's [code]Authorization: Bearer[/code]
## header on native builds, and as [code]?token=[/code] in the URL on web builds (browsers cannot
## set handshake headers; see [method handshake_for]).
## An exported value is saved in the scene file in plain text: for a real secret, leave it empty
## in the scene and set it from code at run time (e.g. from [method OS.get_environment] or a
## config file outside the project).
@export var token := ""
## The story's global caption, prefixed to every shot prompt.
@export_multiline var global_caption := ""
## Story seed: the same seed and the same cues give the same frames (a uint64; see
## [ShotStreamProtocol] for values of 2^63 and above).
@export var story_seed := 0
## Pixel format of the frames: RGBA8 (texture-friendly, the default) or RGB8.
@export var frame_format: ShotStreamProtocol.FrameFormat = ShotStreamProtocol.FrameFormat.RGBA8
## What decodes the frames: UNSPECIFIED (the server's default), WAN (the Wan2.1 VAE, exact) or TAE
## (a tiny preview decoder: much faster, somewhat lower quality; the server must have it). The
## decoder the server chose is [code]session["decoder"][/code] once the session is open.
@export var decoder: ShotStreamProtocol.Decoder = ShotStreamProtocol.Decoder.UNSPECIFIED
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
## Off by default. On (with [member auto_reconnect]): a snapshot is asked for as every shot starts;
## when the server goes away (connection lost, [code]closed[/code] "server draining" or "server
## shutdown") the new session continues from the last one (else a new story, same caption and
## seed), the shot in progress and the queued cues cued again ([signal story_resumed]).
@export var resume_story := false
## Delay before the first retry.
@export_range(0.0, 60.0, 0.05, "suffix:s") var reconnect_initial_s := 0.25
## Longest delay between retries (the delay doubles up to this).
@export_range(0.0, 600.0, 0.5, "suffix:s") var reconnect_max_s := 10.0
## Retries after a failure (negative: forever).
@export var reconnect_max_retries := 5
## Give up the WebSocket handshake, and then the wait for [code]opened[/code], after this long
## each (a failed connect: retried as above).
@export_range(0.1, 120.0, 0.1, "suffix:s") var connect_timeout_s := 10.0
## Closing waits this long for the server to end the session, then closes the socket from this
## side and waits this long again before dropping it.
@export_range(0.1, 60.0, 0.1, "suffix:s") var close_timeout_s := 5.0

@export_group("Advanced")
## Bytes the socket can hold between two polls; a message that does not fit is dropped (the
## engine prints "Buffer payload full"; the client reports the missing chunk and acks it). 0 =
## automatic: room for the credits' chunks of the largest model, credits x (12 x 832 x 480 x
## channels + [constant CHUNK_HEADER_BYTES]) + [constant TEXT_MESSAGES_BYTES] (38.6 MB for 2
## credits of RGBA8; Godot allocates a ring of the next power of two above it plus a packet buffer
## of its size). Set before connecting; [signal connected] is followed by an error when it is too
## small for the session.
@export var inbound_buffer_bytes := 0
## Web builds (4.4+): the browser's WebSocket, each chunk kept in the browser until its frames show,
## not a [WebSocketPeer] (whose get_packet alone takes 22-29 ms for a 19 MB chunk on the main
## thread). Off: a WebSocketPeer (and [member inbound_buffer_bytes]) everywhere.
@export var browser_socket := true
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
## The take being recorded (TakeStarted: name, path, quality as granted, full_path), {} when none.
var take: Dictionary:
	get:
		return _take
## The last Stats message, {} before the first.
var last_stats: Dictionary = {}
## Sessions reopened after a dropped connection or a server shutdown.
var reconnects := 0
## A story snapshot ([signal snapshot_ready]'s bytes) that every open, reconnects included,
## continues instead of a new story (its caption, seed and decoder are the snapshot's); empty: a
## new story. Sent as open's first part, the rest once the session opens ([signal restored]
## follows; a snapshot the server cannot continue ends the session with a fatal error).
var snapshot := PackedByteArray()
## An open session's id (on the same server) that every open forks while [member snapshot] is
## empty: its story at its next shot boundary. "" = none. See [method fork_story].
var fork_session_id := ""
## The largest snapshot this client sends or puts together (default 256 MiB).
var max_snapshot_bytes := ShotStreamSnapshotTransfer.DEFAULT_MAX_BYTES

var _state := State.DISCONNECTED
var _session: Dictionary = {}
var _take: Dictionary = {}
var _ws: Variant  # a WebSocketPeer, or in web builds a BrowserSocket (same methods)
var _policy := ShotStreamReconnectPolicy.new()
var _retry := 0
var _retry_at_ms := 0
var _phase_started_ms := 0
var _ending := ""  # why the session ended, once known ("" while it goes on)
var _reopen := false  # open a new session once the socket is closed (server shutdown)
var _close_frame_sent := false
var _was_opened := false
var _next_seq := 0  # the chunk_seq expected next (0: none expected)
var _unsent: Array[String] = []
var _sent_cues: Array[String] = []  # event ids sent in this session whose shot has not started
var _acks: Array[Array] = []  # [chunk_seq, last frame index or -1, player.configurations]
var _cue_counter := 0
var _cue_sent_us: Dictionary = {}
var _story := ClientStory.new(self)
var _resume := ClientResume.new(self)


func _init() -> void:
	process_mode = Node.PROCESS_MODE_ALWAYS


func _ready() -> void:
	if connect_on_ready and not Engine.is_editor_hint():
		open_session()


func _process(_delta: float) -> void:
	if auto_poll:
		poll()


func _notification(what: int) -> void:
	if what == NOTIFICATION_PREDELETE and _ws != null:
		_ws.close()  # freed: the server ends the session as if it had received close
		_ws = null


## Connects and opens a session (no-op unless [constant State.DISCONNECTED]). Returns OK, or
## ERR_INVALID_PARAMETER for a bad URL or an [code]open[/code] message too big for the gateway
## (a huge [member global_caption]).
func open_session() -> Error:
	if _state != State.DISCONNECTED:
		return OK
	if not (server_url.begins_with("ws://") or server_url.begins_with("wss://")):
		_report(0, Texts.bad_url(server_url, DEFAULT_URL), true)
		return ERR_INVALID_PARAMETER
	if not _story.start_problem().is_empty():
		_report(0, "ShotStreamClient.open_session: " + _story.start_problem(), true)
		return ERR_INVALID_PARAMETER
	if _too_big(_open_message(), "open_session (the global caption)"):
		return ERR_INVALID_PARAMETER
	_policy = ShotStreamReconnectPolicy.new(
		reconnect_initial_s, reconnect_max_s, reconnect_max_retries
	)
	_retry = 0
	_start_socket()
	return OK


## Ends the session politely ([signal disconnected] follows with "client"): asks the server to
## end it when one is open, else cancels the connect or retry in progress. Drops the queued cues.
func close() -> void:
	_drop_unsent()
	match _state:
		State.OPEN:
			_ending = "client"
			_send(ShotStreamProtocol.close_message())
			_phase_started_ms = Time.get_ticks_msec()
			_set_state(State.CLOSING)
		State.CLOSING:
			_reopen = false
		State.DISCONNECTED:
			pass
		_:
			_drop_socket()
			_finish("client")


## Drops the connection at once (the server ends the session as if it had received close;
## [signal disconnected] follows with "aborted"). Drops the queued cues.
func abort() -> void:
	_drop_socket()
	_drop_unsent()
	_finish("aborted")


## Sends a shot for [param prompt]. [param event_id] "" = "godot-N"; [param num_chunks] 0 = the
## server's full shot (at most the session's max_chunks_per_shot, 7 for the 1.3B model);
## [param mode] "wait" (after the current and queued shots) or "cut" (drop queued cues, cut the
## current shot at its next chunk, or with [param at_chunk] > 0 once it has made that many); [param
## tags] are echoed back. Sent now when the session is open, else queued until it opens (at most
## [constant MAX_QUEUED_CUES]). Returns the event id ("" on bad input, a full queue or a message
## over [constant MAX_CLIENT_MESSAGE_BYTES]).
func cue(
	prompt: String,
	event_id: String = "",
	num_chunks: int = 0,
	mode: String = "wait",
	tags: PackedStringArray = PackedStringArray(),
	at_chunk: int = 0
) -> String:
	var refusal := _cue_refusal(prompt, num_chunks, mode, at_chunk)
	if not refusal.is_empty():
		_report(0, "ShotStreamClient.cue: " + refusal)
		return ""
	var cue_mode: ShotStreamProtocol.CueMode = (
		ShotStreamProtocol.CueMode.CUT
		if mode.to_lower() == "cut"
		else ShotStreamProtocol.CueMode.WAIT
	)
	if event_id.is_empty():
		_cue_counter += 1
		event_id = "godot-%d" % _cue_counter
	var text := ShotStreamProtocol.cue_message(
		event_id, prompt, num_chunks, cue_mode, tags, at_chunk
	)
	if text.is_empty() or _too_big(text, "cue"):
		return ""
	var fields := {"event_id": event_id, "prompt": prompt, "num_chunks": num_chunks}
	fields.merge({"mode": mode.to_lower(), "tags": tags, "at_chunk": at_chunk})
	if not _resume.take_cue(fields):
		_send_or_queue(event_id, text)
	return event_id


func _send_or_queue(event_id: String, text: String) -> void:
	if _state == State.OPEN:
		_cue_sent_us[event_id] = Time.get_ticks_usec()
		_sent_cues.append(event_id)
		_send(text)
	else:
		_unsent.append(text)


## [method cue] with mode "cut" ([param at_chunk] > 0: once the current shot made that many).
func cut(
	prompt: String,
	event_id: String = "",
	num_chunks: int = 0,
	tags: PackedStringArray = PackedStringArray(),
	at_chunk: int = 0
) -> String:
	return cue(prompt, event_id, num_chunks, "cut", tags, at_chunk)


## Stops generating after the chunk in progress (the GPU idles).
func pause() -> void:
	_send_if_open(ShotStreamProtocol.pause_message(), "pause")


## Resumes generating.
func resume() -> void:
	_send_if_open(ShotStreamProtocol.resume_message(), "resume")


## Records the session's frames, from the next chunk on, into an MP4 on the server's host
## ([param take_name]: 1-64 of A-Z a-z 0-9 - _ . or "" for a server-chosen name). [param quality]
## LIVE records the frames as the session sees them; FULL also re-decodes the recorded shots with
## the Wan VAE once the take stops (worth it with a TAE session; [signal take_saved] then has
## full_path and full_bytes). LIVE is sent as the proto default (left out of the message), which
## servers without take qualities accept too. Answered by [signal take_started], or
## [signal error_received] (e.g. 9 FAILED_PRECONDITION: already recording).
func start_take(
	take_name: String = "",
	quality: ShotStreamProtocol.TakeQuality = ShotStreamProtocol.TakeQuality.LIVE
) -> void:
	var wire: int = (
		ShotStreamProtocol.TakeQuality.UNSPECIFIED
		if quality == ShotStreamProtocol.TakeQuality.LIVE
		else quality
	)
	_send_if_open(ShotStreamProtocol.start_take_message(take_name, wire), "start_take")


## Finishes the take; answered by [signal take_saved].
func stop_take() -> void:
	_send_if_open(ShotStreamProtocol.stop_take_message(), "stop_take")


## Opens a session that continues [param saved] (a [member snapshot]: the bytes
## [signal snapshot_ready] gave, e.g. [member ShotStreamSnapshot.data]) exactly as the story would
## have gone on; as [method open_session] otherwise (a no-op unless disconnected: [method abort]
## the story playing first). Clears [member fork_session_id]. An empty [param saved] (a save that
## could not be read) is refused with ERR_INVALID_PARAMETER instead of starting a new story.
func connect_to_story(saved: PackedByteArray) -> Error:
	if saved.is_empty():
		_report(
			0, "ShotStreamClient.connect_to_story: an empty snapshot (was the save read?)", true
		)
		return ERR_INVALID_PARAMETER
	snapshot = saved
	fork_session_id = ""
	return open_session()


## Opens a session that starts from session [param session_id]'s story (open on the same server)
## at its next shot boundary: e.g. two endings of a player's choice. Clears [member snapshot].
func fork_story(session_id: String) -> Error:
	snapshot = PackedByteArray()
	fork_session_id = session_id
	return open_session()


## Asks for the story's snapshot ([signal snapshot_ready]). [param wait_for_boundary]: taken when
## the shot in progress ends (or its cut lands); false: refused mid-shot (error 9, non-fatal).
func request_snapshot(wait_for_boundary: bool = true) -> void:
	_story.request_snapshot(wait_for_boundary)


## Asks for the session's cue log, enough to replay it exactly ([signal cue_log_ready]).
func request_cue_log() -> void:
	_story.request_cue_log()


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


## Services the socket: handshake, incoming messages, due acks, retries and timeouts. Called
## every frame with [member auto_poll]; call it yourself otherwise.
func poll() -> void:
	match _state:
		State.DISCONNECTED:
			return
		State.WAITING_TO_RETRY:
			if Time.get_ticks_msec() >= _retry_at_ms:
				_start_socket()
			return
	_poll_socket()
	_story.pump()  # the rest of a snapshot, as the socket takes it
	_send_due_acks()


## The client name sent in open: [member client_name], or "godot/<project name>".
func effective_client_name() -> String:
	if not client_name.is_empty():
		return client_name
	return "godot/" + str(ProjectSettings.get_setting("application/config/name", "Game"))


## The inbound buffer the next connection gets: [member inbound_buffer_bytes], or when that is 0
## room for the requested credits' chunks of the largest model.
func effective_inbound_buffer_bytes() -> int:
	if inbound_buffer_bytes > 0:
		return inbound_buffer_bytes
	var credits := max_chunks_in_flight if max_chunks_in_flight > 0 else SERVER_DEFAULT_CREDITS
	return inbound_bytes_for(credits, MODEL_WIDTH, MODEL_HEIGHT, MODEL_CHUNK_FRAMES, frame_format)


## Bytes an inbound buffer needs to hold [param credits] chunks of [param frames] frames of
## [param width] x [param height] in [param pixel_format] (a [enum ShotStreamProtocol.FrameFormat])
## and the text messages between them.
static func inbound_bytes_for(
	credits: int, width: int, height: int, frames: int, pixel_format: int
) -> int:
	var chunk := frames * width * height * ShotStreamProtocol.channels(pixel_format)
	return maxi(credits, 1) * (chunk + CHUNK_HEADER_BYTES) + TEXT_MESSAGES_BYTES


## How [param token] travels to [param url]: [code]{"url": String, "headers":
## PackedStringArray}[/code]. Native builds send it in an [code]Authorization: Bearer[/code] header
## (it stays out of URLs and logs); [param web] builds cannot set handshake headers, so there it
## goes in the URL as [code]?token=[/code] (URL-encoded). No token: the URL as given, no header.
static func handshake_for(url: String, token: String, web: bool) -> Dictionary:
	if token.is_empty():
		return {"url": url, "headers": PackedStringArray()}
	if web:
		var sep := "&" if "?" in url else "?"
		return {"url": url + sep + "token=" + token.uri_encode(), "headers": PackedStringArray()}
	return {"url": url, "headers": PackedStringArray(["Authorization: Bearer " + token])}


func _get_configuration_warnings() -> PackedStringArray:
	var warnings := PackedStringArray()
	if not (server_url.begins_with("ws://") or server_url.begins_with("wss://")):
		warnings.append(
			(
				'Server Url "%s" is not a WebSocket URL: use ws://HOST:PORT/v1/direct (%s).'
				% [server_url, DEFAULT_URL]
			)
		)
	return warnings


## Why a cue cannot be sent or queued ("" when it can).
func _cue_refusal(prompt: String, num_chunks: int, mode: String, at_chunk: int) -> String:
	var full := _state != State.OPEN and _unsent.size() >= MAX_QUEUED_CUES
	var most: int = _session.get("max_chunks_per_shot", 0)
	return Texts.cue_refusal(
		prompt, num_chunks, mode, at_chunk, most, MAX_QUEUED_CUES if full else 0
	)


func _open_message() -> String:
	return (
		_story
		. open_message(
			{
				"client_name": effective_client_name(),
				"global_caption": global_caption,
				"seed": story_seed,
				"frame_format": frame_format,
				"transport": ShotStreamProtocol.Transport.INLINE,
				"max_chunks_in_flight": max_chunks_in_flight,
				"decoder": decoder,
			}
		)
	)


func _start_socket() -> void:
	_ws = BrowserSocket.new_socket(browser_socket)
	_ws.inbound_buffer_size = effective_inbound_buffer_bytes()
	_ws.outbound_buffer_size = 1 << 20
	_ws.max_queued_packets = 4096
	if "heartbeat_interval" in _ws:  # Godot 4.4+
		_ws.set("heartbeat_interval", HEARTBEAT_S)
	_ending = ""
	_reopen = false
	_close_frame_sent = false
	_was_opened = false
	_next_seq = 0
	var handshake := handshake_for(server_url, token, OS.has_feature("web"))
	_ws.handshake_headers = handshake["headers"]
	_phase_started_ms = Time.get_ticks_msec()
	_set_state(State.CONNECTING)
	var err: Error = _ws.connect_to_url(handshake["url"])
	if err != OK:
		_ws = null
		_on_socket_closed(-1, error_string(err))


func _poll_socket() -> void:
	if _ws == null:
		return
	_ws.poll()
	var ws_state: int = _ws.get_ready_state()
	if ws_state == WebSocketPeer.STATE_CONNECTING:
		if _phase_ms() > connect_timeout_s * 1000.0:
			_drop_socket()
			_on_socket_closed(-1, "handshake timed out after %.1f s" % connect_timeout_s)
		return
	if ws_state == WebSocketPeer.STATE_OPEN and _state == State.CONNECTING:
		_phase_started_ms = Time.get_ticks_msec()
		_set_state(State.OPENING)
		_send(_open_message())
	var chunks := 0  # one per frame at most: a second waits in the buffer for the next poll
	while _ws != null and _ws.get_available_packet_count() > 0:
		if chunks > 0 and (_ws is WebSocketPeer or _ws.next_is_binary()):
			break  # (a WebSocketPeer cannot tell what comes next: it waits after any chunk)
		var data: PackedByteArray = _ws.get_packet()
		var is_text: bool = _ws.was_string_packet()  # after get_packet(), not before
		_handle_packet(data, is_text)
		chunks += 0 if is_text else 1
	if _ws == null or _ws.get_available_packet_count() > 0:
		return  # messages left for the next poll: a closed socket's end waits for them
	if _ws.get_ready_state() == WebSocketPeer.STATE_CLOSED:
		var ws: Variant = _ws
		_ws = null
		_on_socket_closed(ws.get_close_code(), ws.get_close_reason())
	elif _state == State.OPENING and _phase_ms() > connect_timeout_s * 1000.0:
		_drop_socket()
		_on_socket_closed(-1, "the server did not answer open within %.1f s" % connect_timeout_s)
	elif _state == State.CLOSING and _phase_ms() > close_timeout_s * 1000.0:
		if not _close_frame_sent:
			_close_socket()  # the server did not end the session in time: close from this side
		else:
			_ws.close(-1)
			_ws = null
			_report(0, Texts.close_timeout(server_url, close_timeout_s), true)
			_on_socket_closed(-1, "close handshake timed out")


func _phase_ms() -> float:
	return float(Time.get_ticks_msec() - _phase_started_ms)


func _handle_packet(data: PackedByteArray, is_text: bool) -> void:
	var m: Dictionary
	if is_text:
		m = ShotStreamProtocol.decode_server_text(data.get_string_from_utf8())
	else:  # pixels by reference; a BrowserSocket's data is the header, the frames stay in JS
		var js: JavaScriptObject = _ws.last_buffer if _ws is BrowserSocket else null
		m = ShotStreamProtocol.decode_server_binary(data, false, _ws.last_size if js else -1)
		if js != null and m["kind"] == "chunk" and m["error"] == "":
			m["message"]["pixels_js"] = js
	if m["error"] != "":
		_report(0, "ShotStreamClient: malformed message from the server: " + m["error"])
		if m["kind"] == "chunk":  # its header was readable: give its credit back
			var seq: int = m["message"]["chunk_seq"]
			_note_seq(seq)
			_send(ShotStreamProtocol.ack_message(seq))
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
			_on_shot_started(body["event_id"])
			shot_started.emit(body)
		"chunk":
			_on_chunk(body)
		"shot_finished":
			_cue_sent_us.erase(body["event_id"])
			if player != null and is_instance_valid(player):
				player.end_shot(body)  # it ends on screen once its frames are shown
			shot_finished.emit(body)
		"stats":
			last_stats = body
			stats_received.emit(body)
		"error":
			_on_server_error(body)
		"closed":
			_end_session(body["reason"])
			_close_socket()
		"take_started":
			_take = body
			take_started.emit(body["name"], body["path"])
		"take_saved":
			if _take.get("name") == body["name"]:
				_take = {}
			take_saved.emit(body)
		"snapshot", "restored", "cue_log":
			_story.handle(kind, body)


func _on_opened(opened: Dictionary) -> void:
	if opened["transport"] != ShotStreamProtocol.Transport.INLINE:
		_end_session("error")
		_report(0, Texts.wrong_transport(opened["transport"]), true)
		_close_socket()
		return
	_session = opened
	_take = {}
	_was_opened = true
	_retry = 0
	_next_seq = 1
	_acks.clear()
	_cue_sent_us.clear()
	if opened["protocol_version"] != ShotStreamProtocol.PROTOCOL_VERSION:
		_report(0, Texts.other_protocol(opened["protocol_version"]))
	var frames: int = maxi(opened["frames_first_chunk"], opened["frames_per_chunk"])
	var need := inbound_bytes_for(
		opened["max_chunks_in_flight"],
		opened["width"],
		opened["height"],
		frames,
		opened["frame_format"]
	)
	var have: int = _ws.inbound_buffer_size
	var sizes := [have, opened["max_chunks_in_flight"], frames, opened["width"], opened["height"]]
	if have < need:
		_report(0, Texts.small_inbound_buffer(sizes + [need]))
	if player != null and is_instance_valid(player):
		player.configure_for_session(opened)
	_set_state(State.OPEN)
	_story.on_opened()  # the rest of the snapshot goes first
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
			_sent_cues.append(parsed["message"]["event_id"])
		_send(text)


func _on_chunk(chunk: Dictionary) -> void:
	var seq: int = chunk["chunk_seq"]
	_note_seq(seq)
	var n: int = chunk["num_frames"]
	var pixel_bytes := ShotStreamProtocol.pixel_bytes(chunk)
	if n < 1 or pixel_bytes != ShotStreamProtocol.expected_pixel_bytes(chunk):
		_report(0, Texts.unplayable_chunk(chunk, pixel_bytes))
		_send(ShotStreamProtocol.ack_message(seq))
		return
	var last := -1
	var configurations := -1
	if player != null and is_instance_valid(player):
		var accepted := player.push_chunk(chunk)
		if accepted < n:
			_report(
				0,
				(
					"ShotStreamClient: the player's buffer is full: dropped %d frames of chunk %s"
					% [n - accepted, ShotStreamProtocol.u64_to_string(seq)]
				)
			)
		last = player.pushed_frames - 1
		configurations = player.configurations
	var event_id: String = chunk["event_id"]
	if _cue_sent_us.has(event_id):
		var ms := (Time.get_ticks_usec() - int(_cue_sent_us[event_id])) / 1000.0
		_cue_sent_us.erase(event_id)
		cue_latency.emit(event_id, ms)
	chunk_received.emit(chunk)
	if not manual_ack:
		_acks.append([seq, last, configurations])
		_send_due_acks()


## Notes the arrival of chunk [param seq]; chunks skipped before it never arrived (dropped by a
## full inbound buffer): reports them and acks them so their credits come back.
func _note_seq(seq: int) -> void:
	if _next_seq < 1 or seq < _next_seq:  # nothing expected yet, or a repeat
		return
	if seq > _next_seq:
		_report(0, Texts.missing_chunks(_next_seq, seq - 1))
		var credits: int = maxi(_session.get("max_chunks_in_flight", 1), 1)
		for missing in range(maxi(_next_seq, seq - credits), seq):  # at most the credits
			_send(ShotStreamProtocol.ack_message(missing))
	_next_seq = seq + 1


func _send_due_acks() -> void:
	while not _acks.is_empty() and _state == State.OPEN:
		var a: Array = _acks[0]
		# frames of an earlier player configuration (size change, configure()) never play: ack now
		if (
			a[1] >= 0
			and player != null
			and is_instance_valid(player)
			and player.configurations == a[2]
			and player.presented_frame_index < a[1]
		):
			return
		_acks.pop_front()
		_send(ShotStreamProtocol.ack_message(a[0]))


func _on_server_error(e: Dictionary) -> void:
	var code: int = e["code"]
	var fatal: bool = e["fatal"]
	var event_id: String = e["event_id"]
	_cue_sent_us.erase(event_id)
	var about: String = "" if event_id.is_empty() else ' (cue "%s")' % event_id
	var text := (
		"ShotStream server error %s%s: %s"
		% [ShotStreamProtocol.status_name(code), about, e["message"]]
	)
	if fatal:
		_end_session("error")
	_report(code, text, fatal, e["message"])
	if _sent_cues.has(event_id):
		_sent_cues.erase(event_id)
		cue_dropped.emit(event_id, e["message"])
	if fatal:
		_close_socket()


## The server ended the session (with [code]closed[/code] [param reason], or "error"): the first
## reason wins; "server shutdown" reopens a new session once the socket is closed.
func _end_session(reason: String) -> void:
	if _ending.is_empty():
		_ending = reason
	_reopen = auto_reconnect and _ending == "server shutdown" or _resume.moves(_ending, true)


## Closes the socket from this side (once) and waits for it in CLOSING.
func _close_socket() -> void:
	if _ws == null or _close_frame_sent:
		return
	_close_frame_sent = true
	_ws.close(1000)
	_phase_started_ms = Time.get_ticks_msec()
	_set_state(State.CLOSING)


func _drop_socket() -> void:
	if _ws != null:
		_ws.close()
		_ws = null


## The end of a close frame's reason as the gateway writes it: "closed: <reason>" or
## "error <code>: <message>" (native builds can lose the messages just before the close frame).
func _end_from_close_reason(reason: String) -> void:
	if reason.begins_with("closed: "):
		_end_session(reason.trim_prefix("closed: "))
	elif reason.begins_with("error "):
		var rest := reason.trim_prefix("error ")
		var colon := rest.find(": ")
		var code := (
			rest.left(colon).to_int() if colon > 0 and rest.left(colon).is_valid_int() else 0
		)
		var message := rest.substr(colon + 2) if colon > 0 else rest
		_end_session("error")
		_report(
			code,
			(
				"ShotStream server error %s: %s (from the close frame)"
				% [ShotStreamProtocol.status_name(code), message]
			),
			true,
			message
		)


func _on_socket_closed(code: int, reason: String) -> void:
	_end_player_shots()
	if _ending.is_empty() and code == 1000:
		_end_from_close_reason(reason)
	_drop_sent_cues(_resume.moves(_ending, _was_opened))
	_session = {}
	_take = {}
	_acks.clear()
	_cue_sent_us.clear()
	if not _ending.is_empty():
		if _reopen:
			_reopen_session("the server ended the session (%s)" % _ending, _ending)
		else:
			_finish(_ending)
		return
	var detail := "WebSocket close code %d%s" % [code, "" if reason.is_empty() else ", " + reason]
	if not _was_opened:
		var text := Texts.unreachable(server_url, detail)
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
	_reopen_session("the connection to %s was lost (%s)" % [server_url, detail], "connection lost")


## A session that was open is gone ([param what] happened): a new one when
## [member auto_reconnect] is on, else the end.
func _reopen_session(what: String, reason: String) -> void:
	var how := "A story cannot resume: the session is over."
	if _resume.moves(_ending, true):
		how = Texts.resuming(_resume.prepare(reason), _resume.kept_next)
	elif auto_reconnect:
		how = "A story cannot resume: reconnecting as a new session"
		how += " (from the snapshot)." if not snapshot.is_empty() else "."
	_report(0, "ShotStreamClient: %s. %s" % [what, how], not auto_reconnect)
	if not auto_reconnect:
		_finish(reason)
		return
	reconnects += 1
	_retry = 0
	_schedule_retry(_policy.delay_for(0))
	disconnected.emit(reason)


func _schedule_retry(delay_s: float) -> void:
	_retry_at_ms = Time.get_ticks_msec() + int(delay_s * 1000.0)
	_set_state(State.WAITING_TO_RETRY)


## The end for good: nothing is retried and the queued cues are dropped.
func _finish(reason: String) -> void:
	_end_player_shots()
	_drop_sent_cues()
	_drop_unsent()
	_resume.reset()
	_session = {}
	_take = {}
	_acks.clear()
	_cue_sent_us.clear()
	if _state == State.DISCONNECTED:
		return
	_set_state(State.DISCONNECTED)
	disconnected.emit(reason)


## Shot [param event_id] started: the cues sent before it that have not started were dropped by
## a cut (the server plays cues in order; only a cut clears its queue).
func _on_shot_started(event_id: String) -> void:
	var at := _sent_cues.find(event_id)
	if at < 0:
		return
	var dropped := _sent_cues.slice(0, at)
	var rest: Array[String] = []
	rest.assign(_sent_cues.slice(at + 1))
	_sent_cues = rest
	for id: String in dropped:
		cue_dropped.emit(id, "dropped by a cut")


## [param moving]: the story moves to a new session, which gets some of them again.
func _drop_sent_cues(moving: bool = false) -> void:
	var dropped := _sent_cues
	_sent_cues = []
	for id: String in dropped:
		if not (moving and _resume.recues(id)):
			cue_dropped.emit(id, "the session ended")


func _drop_unsent() -> void:
	var dropped := _unsent
	_unsent = []
	for text: String in dropped:
		cue_dropped.emit(
			ShotStreamProtocol.decode_client_text(text)["message"].get("event_id", ""), "not sent"
		)


## The session is gone: the player's shots end on screen once the frames they have are shown.
func _end_player_shots() -> void:
	if player != null and is_instance_valid(player):
		player.end_all_shots()


func _send_if_open(text: String, what: String) -> void:
	if _state != State.OPEN:
		_report(0, "ShotStreamClient.%s: no open session (call open_session() first)" % what)
		return
	_send(text)


func _send(text: String) -> void:
	if text.is_empty() or _ws == null or _ws.get_ready_state() != WebSocketPeer.STATE_OPEN:
		return
	var err: Error = _ws.send_text(text)
	if err != OK:
		_report(0, "ShotStreamClient: sending failed (%s)" % error_string(err))


## True (and reported) when [param text] is over the gateway's message limit.
func _too_big(text: String, what: String) -> bool:
	var size := text.to_utf8_buffer().size()
	if size <= MAX_CLIENT_MESSAGE_BYTES:
		return false
	_report(0, Texts.too_big(what, size, MAX_CLIENT_MESSAGE_BYTES))
	return true


func _set_state(s: State) -> void:
	if s == _state:
		return
	_state = s
	state_changed.emit(s)


func _report(code: int, text: String, fatal: bool = false, message: String = "") -> void:
	if log_errors:
		push_error(text)
	error_received.emit(code, text if message.is_empty() else message, fatal)
