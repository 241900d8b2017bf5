@tool
@icon("res://addons/shotstream/icons/player.svg")
class_name ShotStreamPlayer
extends Node
## Plays a session's frames into one [ImageTexture] at the session's rate (16 fps).
##
## Chunks go into a [ShotStreamJitterBuffer] (playback starts after [member start_frames] frames,
## holds the last frame on an underrun); every frame [method present] shows the frame due now.
## Show [member texture] anywhere a texture goes: a [TextureRect], a [Sprite2D], a
## [StandardMaterial3D] or a shader parameter. Set [member target] and [member target_property]
## to assign it automatically, e.g. a TextureRect and "texture", or a MeshInstance3D and
## "material_override:albedo_texture".[br][br]
## [b]One copy per frame, none per chunk[/b]: a chunk's bytes are queued by reference (with the
## client, the received message itself: the frames are never copied out of it as a whole); the
## texture and its [Image] are created once per frame size, and each frame shown copies its own
## bytes into that Image ([method Image.set_data]) and uploads them ([method ImageTexture.update]),
## one frame per game frame at most, so the work is spread over the frames. With RGB8 frames the
## Forward+ and Mobile renderers convert each update to RGBA (a copy per frame) on GPUs without a
## 3-byte texture format (most desktop GPUs).[br][br]
## Give it to a [ShotStreamClient] ([member ShotStreamClient.player]) and the client feeds it and
## acks each chunk once its last frame is on screen.[br][br]
## [b]The game's clock[/b]: playback runs on [member clock_seconds], which [method Node._process]
## advances by its delta. So pausing the SceneTree pauses the video (nothing is dropped: it goes on
## where it stopped; set [member Node.process_mode] to [constant Node.PROCESS_MODE_ALWAYS] to keep
## it playing), [member Engine.time_scale] slows it down or stops it (turn
## [member follow_time_scale] off to play at real speed), and while it is paused the client's acks
## wait, so generation waits too. A frame of the game longer than a frame of the video (a hitch, a
## background tab, a debugger break) is a stall: [member catch_up] decides what happens, and
## [signal stalled] reports it.[br][br]
## [b]On-screen events[/b]: [signal shot_presented] when a shot's first frame goes up,
## [signal shot_ended] when its last frame is up (not when its last chunk arrives, which can be
## seconds earlier), [signal frame_presented] for every frame. A cutscene can wait for them:
## [codeblock]
## var shot: Dictionary = await player.shot_ended   # the next shot to end on screen
## await player.wait_shot_ended(event_id)           # that shot (at once if it already ended)
## [/codeblock]

## A new texture object was created (first frame size, or the size changed).
signal texture_created(texture: ImageTexture)
## Frame [param frame_index] (arrival order, 0 = first) went on screen.
signal frame_presented(frame_index: int)
## The first frame of a shot went on screen. [param shot]: [code]event_id[/code],
## [code]shot_index[/code], [code]frame_index[/code] (that frame's arrival index).
signal shot_presented(shot: Dictionary)
## A shot's last frame is on screen (or, for a shot none of whose frames will play, the frames
## before it are). [param shot]: [code]event_id[/code], [code]shot_index[/code],
## [code]frames[/code] (its frames that went on screen), [code]complete[/code] (it got every
## chunk it planned), [code]cut[/code] (a cut cue ended it early), [code]interrupted[/code] (some
## of its frames will never play: a new session, or [method configure]).
signal shot_ended(shot: Dictionary)
## A frame went up [param late_seconds] after its slot (the game's clock jumped: a hitch, a
## background tab); [param skipped] frames were skipped to catch up (always 0 with
## [constant ShotStreamJitterBuffer.CatchUp.DELAY]).
signal stalled(late_seconds: float, skipped: int)

const BrowserSocket := preload("res://addons/shotstream/browser_socket.gd")

## Shots whose on-screen events [method wait_shot_ended] and [method wait_shot_presented] remember.
const RECENT_SHOTS := 64

## Node whose [member target_property] receives [member texture] (optional).
@export var target: Node:
	set(value):
		target = value
		_bind()
## Property path on [member target]: "texture", or "material_override:albedo_texture",
## "material:shader_parameter/frame", ...
@export var target_property := "texture":
	set(value):
		target_property = value
		_bind()
## Presentation rate when the session does not say (a session's fps replaces it).
@export_range(1.0, 120.0, 0.5, "suffix:fps") var fps := 16.0
## Frames queued before playback starts, and restarts after an underrun (at most the frames of a
## shot's first chunk, so a short shot never stalls).
@export_range(1, 256) var start_frames := 4
## Jitter buffer capacity in frames (grown to hold the session's chunks in flight).
@export_range(1, 4096) var capacity_frames := 64
## What to do with frames that do not fit: refuse them (default) or drop the oldest.
@export var overflow_policy := ShotStreamJitterBuffer.OverflowPolicy.REFUSE
## What a stall does: DELAY (default) shows every frame and plays on later by the stall; SKIP
## drops the frames whose slots passed to stay on the game's clock (e.g. in sync with its audio).
@export var catch_up := ShotStreamJitterBuffer.CatchUp.DELAY:
	set(value):
		catch_up = value
		if _jitter != null:
			_jitter.catch_up = value
## Follow [member Engine.time_scale]: slow motion slows the video, 0 stops it. Off: the video
## plays at real speed whatever the time scale (it still stops while this node is paused).
@export var follow_time_scale := true
## Present frames from _process. Off: call [method present] yourself.
@export var playing := true

## The texture the frames play in (null before the first session or [method configure]).
var texture: ImageTexture:
	get:
		return _texture
## The frame on screen as an [Image] (the texture's source; same object for the whole session).
var frame_image: Image:
	get:
		return _frame_image
## The jitter buffer (null before [method configure]).
var jitter: ShotStreamJitterBuffer:
	get:
		return _jitter
## Frame width in pixels (0 before [method configure]).
var width: int:
	get:
		return _width
## Frame height in pixels.
var height: int:
	get:
		return _height
## Frames accepted so far (the arrival index of the next frame).
var pushed_frames := 0
## The player's clock in seconds: game time, advanced by [method Node._process] (see the class
## description); frames are scheduled on it.
var clock_seconds: float:
	get:
		return _clock
## The shot on screen ([code]event_id[/code], [code]shot_index[/code]), {} before the first.
var current_shot: Dictionary = {}
## Arrival index of the frame on screen (-1 before the first).
var presented_frame_index := -1
## How many times [method configure] ran (it restarts the frame indices; a client that waits for
## a frame index of an earlier configuration acks at once, as that frame will never play).
var configurations := 0

var _texture: ImageTexture
var _frame_image: Image
var _jitter: ShotStreamJitterBuffer
var _width := 0
var _height := 0
var _image_format := Image.FORMAT_RGBA8
var _frame_format := ShotStreamProtocol.FrameFormat.RGBA8
var _clock := 0.0
var _last_usec := 0
var _last_frame := -2
# shots not yet ended on screen, oldest first: {event_id, shot_index, first, last (arrival indices
# of their frames, -1 = none), after (the last frame pushed before them), finished, complete, cut,
# presented, frames}
var _shots: Array[Dictionary] = []
var _ended: Dictionary = {}  # event_id -> shot_ended's Dictionary (the last RECENT_SHOTS)
var _presented: Dictionary = {}  # event_id -> shot_presented's Dictionary (likewise)


func _process(delta: float) -> void:
	_clock += _game_step(delta)
	if playing and _jitter != null:
		present(_clock)


## Sizes the texture and the jitter buffer for a session (the SessionOpened message).
func configure_for_session(opened: Dictionary) -> void:
	var first: int = opened["frames_first_chunk"]
	var per_chunk := maxi(maxi(first, opened["frames_per_chunk"]), 1)
	var credits: int = maxi(opened["max_chunks_in_flight"], 1)
	var capacity := mini(4096, maxi(maxi(capacity_frames, 1), (credits + 1) * per_chunk))
	var start := mini(maxi(start_frames, 1), first) if first > 0 else start_frames
	var rate: float = opened["fps"] if opened["fps"] > 0 else fps
	configure(opened["width"], opened["height"], rate, capacity, start, opened["frame_format"])


## (Re)creates the jitter buffer and, when the size or format changes, the texture. Frames
## queued before are dropped and the frame indices restart at 0.
## [param frame_format] is a [enum ShotStreamProtocol.FrameFormat].
func configure(
	frame_width: int,
	frame_height: int,
	rate: float = 16.0,
	capacity: int = 64,
	start: int = 4,
	frame_format: int = ShotStreamProtocol.FrameFormat.RGBA8
) -> void:
	if frame_width < 1 or frame_height < 1:
		push_error(
			"ShotStreamPlayer: frame size must be positive, got %dx%d" % [frame_width, frame_height]
		)
		return
	var image_format := (
		Image.FORMAT_RGBA8
		if frame_format == ShotStreamProtocol.FrameFormat.RGBA8
		else Image.FORMAT_RGB8
	)
	if (
		_texture == null
		or frame_width != _width
		or frame_height != _height
		or image_format != _image_format
	):
		_width = frame_width
		_height = frame_height
		_image_format = image_format
		_frame_image = Image.create_empty(_width, _height, false, _image_format)
		_texture = ImageTexture.create_from_image(_frame_image)
		_bind()
		texture_created.emit(_texture)
	_frame_format = frame_format
	capacity = maxi(capacity, 1)
	_jitter = ShotStreamJitterBuffer.new(
		capacity, rate, clampi(start, 1, capacity), 0.0, overflow_policy, catch_up
	)
	pushed_frames = 0
	presented_frame_index = -1
	configurations += 1
	var pending := _shots
	_shots = []
	for shot: Dictionary in pending:
		_end(shot, true)


## Queues a chunk's frames (a FrameChunk with pixels, as [signal ShotStreamClient.chunk_received]
## gives it). [param now] in seconds on [member clock_seconds]' clock (NAN = now). Returns the
## frames accepted.
func push_chunk(chunk: Dictionary, now: float = NAN) -> int:
	var n: int = chunk["num_frames"]
	var w: int = chunk["width"]
	var h: int = chunk["height"]
	var fmt: int = chunk["frame_format"]
	var pixels: PackedByteArray = chunk["pixels"]
	var offset: int = chunk.get("pixels_offset", 0)
	var size := ShotStreamProtocol.pixel_bytes(chunk)
	if size != ShotStreamProtocol.expected_pixel_bytes(chunk) or n < 1 or offset < 0:
		push_error(
			(
				"ShotStreamPlayer: chunk %s has %d pixel bytes for %d frames of %dx%d: not playable"
				% [ShotStreamProtocol.u64_to_string(chunk["chunk_seq"]), size, n, w, h]
			)
		)
		return 0
	if fmt == ShotStreamProtocol.FrameFormat.UNSPECIFIED:
		fmt = ShotStreamProtocol.FrameFormat.RGB8
	if _jitter == null or w != _width or h != _height or fmt != _frame_format:
		var rate := _jitter.fps if _jitter != null else fps
		var capacity := _jitter.capacity if _jitter != null else capacity_frames
		configure(w, h, rate, capacity, mini(start_frames, n), fmt)
	# the chunk's bytes by reference (no copy): frame i starts at offset + i * frame bytes
	var js: Variant = chunk.get("pixels_js")  # the browser's buffer (a web build's BrowserSocket)
	var source: Variant = [js, offset]
	if not js is JavaScriptObject:
		var buffer := StreamPeerBuffer.new()
		buffer.data_array = pixels
		buffer.set_meta(&"frames_at", offset)
		source = buffer
	var first_index := pushed_frames
	var accepted := _jitter.push(source, n, _clock if is_nan(now) else now)
	pushed_frames += accepted
	var shot := _track(chunk.get("event_id", ""), chunk.get("shot_index", 0), first_index, accepted)
	if chunk.get("last_in_shot", false):
		shot["finished"] = true
		shot["complete"] = true
	_update_shots()
	return accepted


## The shot [param finished] (a ShotFinished: event_id, shot_index, cut) has all its frames: it
## ends on screen once they are shown (the client calls this; a shot cut short has no
## last_in_shot chunk, so only this says it is over).
func end_shot(finished: Dictionary) -> void:
	var event_id: String = finished.get("event_id", "")
	if _ended.has(event_id) and _ended[event_id]["shot_index"] == finished.get("shot_index", 0):
		return  # it already ended on screen (its last_in_shot chunk said it was complete)
	var shot := _track(
		finished.get("event_id", ""), finished.get("shot_index", 0), pushed_frames, 0
	)
	shot["finished"] = true
	shot["cut"] = bool(finished.get("cut", false))
	_update_shots()


## No more frames will come for the shots pushed so far (the session ended): each ends on screen
## once its frames are shown.
func end_all_shots() -> void:
	for shot: Dictionary in _shots:
		shot["finished"] = true
	_update_shots()


## Waits until the shot [param event_id] has ended on screen and returns [signal shot_ended]'s
## Dictionary; returns at once when it already has (one of the last [constant RECENT_SHOTS]).
## [code]await player.wait_shot_ended(id)[/code]. A shot that never comes (a cue the server
## refused or a cut dropped) never ends: see [method ShotStreamDirector.play] for that.
func wait_shot_ended(event_id: String) -> Dictionary:
	while not _ended.has(event_id):
		await shot_ended
	return _ended[event_id]


## Waits until the first frame of the shot [param event_id] is on screen (at once when it already
## was) and returns [signal shot_presented]'s Dictionary.
func wait_shot_presented(event_id: String) -> Dictionary:
	while not _presented.has(event_id):
		await shot_presented
	return _presented[event_id]


## Pushes frames [param first] .. [param first] + [param count] - 1 of an [Image] holding frames of
## [member width] x [member height] stacked vertically (for frames that come from elsewhere).
func push_image(image: Image, count: int, now: float = NAN, first: int = 0) -> int:
	if _jitter == null:
		push_error("ShotStreamPlayer.push_image: call configure() first")
		return 0
	if image.get_width() != _width or image.get_height() < (first + count) * _height:
		push_error("ShotStreamPlayer.push_image: the image does not hold those frames")
		return 0
	if image.get_format() != _image_format:
		image.convert(_image_format)
	var accepted := _jitter.push(image, count, _clock if is_nan(now) else now, first)
	pushed_frames += accepted
	return accepted


## No more frames will come: play out what is queued (the last frame stays up).
func complete_adding() -> void:
	if _jitter != null:
		_jitter.complete_adding()


## Shows the frame due at [param now] (seconds on [member clock_seconds]' clock, or your own
## clock when [member playing] is off). True when a new frame went into the texture.
func present(now: float) -> bool:
	if _jitter == null:
		return false
	var stalls := _jitter.stalls
	var skipped := _jitter.skipped_frames
	var shown := _jitter.advance(now)
	if _jitter.stalls != stalls:
		stalled.emit(_jitter.last_stall_seconds, _jitter.skipped_frames - skipped)
	if not shown or not _jitter.frame_is_new:
		return false
	var source: Variant = _jitter.frame_source
	if source is Image:  # push_image(): frames stacked vertically
		_frame_image.blit_rect(
			source, Rect2i(0, _jitter.frame_offset * _height, _width, _height), Vector2i.ZERO
		)
	else:  # push_chunk(): the chunk's bytes; one frame's bytes (one copy) become the image's
		var frame_bytes := _width * _height * (4 if _image_format == Image.FORMAT_RGBA8 else 3)
		var at := _jitter.frame_offset * frame_bytes
		var bytes: PackedByteArray
		if source is Array:  # [the browser's buffer, where the frames start]
			bytes = BrowserSocket.frame_bytes(source[0], source[1] + at, frame_bytes)
		else:
			var chunk: StreamPeerBuffer = source
			chunk.seek(int(chunk.get_meta(&"frames_at")) + at)
			bytes = chunk.get_data(frame_bytes)[1]
		_frame_image.set_data(_width, _height, false, _image_format, bytes)
	_texture.update(_frame_image)
	presented_frame_index = _jitter.frame_index
	for shot: Dictionary in _shots:
		if shot["first"] <= presented_frame_index and presented_frame_index <= shot["last"]:
			shot["frames"] += 1
	frame_presented.emit(presented_frame_index)
	_update_shots()
	return true


## The record of shot ([param event_id], [param shot_index]) with [param count] more frames from
## arrival index [param first]; a new shot finishes the ones before it.
func _track(event_id: String, shot_index: int, first: int, count: int) -> Dictionary:
	var shot: Dictionary = {}
	for s: Dictionary in _shots:
		if s["event_id"] == event_id and s["shot_index"] == shot_index:
			shot = s
	if shot.is_empty():
		for s: Dictionary in _shots:
			s["finished"] = true
		shot = {
			"event_id": event_id,
			"shot_index": shot_index,
			"first": -1,
			"last": -1,
			"after": first - 1,
			"finished": false,
			"complete": false,
			"cut": false,
			"presented": false,
			"frames": 0,
		}
		_shots.append(shot)
	if count > 0:
		if shot["first"] < 0:
			shot["first"] = first
		shot["last"] = first + count - 1
	return shot


## Emits the on-screen events due: a shot presented once its first frame is up, ended once it is
## finished and its last frame (or, without frames, the frame before it) is up.
func _update_shots() -> void:
	var on_screen := presented_frame_index
	while not _shots.is_empty():
		var shot: Dictionary = _shots[0]
		if not shot["presented"] and shot["first"] >= 0 and on_screen >= shot["first"]:
			shot["presented"] = true
			if on_screen <= shot["last"]:
				current_shot = {"event_id": shot["event_id"], "shot_index": shot["shot_index"]}
				var info := current_shot.duplicate()
				info["frame_index"] = on_screen
				_remember(_presented, shot["event_id"], info)
				shot_presented.emit(info)
		if not shot["finished"]:
			return
		var end_at: int = shot["last"] if shot["last"] >= 0 else shot["after"]
		if on_screen < end_at:
			return
		_shots.pop_front()
		_end(shot, false)


func _end(shot: Dictionary, interrupted: bool) -> void:
	var info := {
		"event_id": shot["event_id"],
		"shot_index": shot["shot_index"],
		"frames": shot["frames"],
		"complete": shot["complete"] and not interrupted,
		"cut": shot["cut"],
		"interrupted": interrupted,
	}
	_remember(_ended, shot["event_id"], info)
	shot_ended.emit(info)


static func _remember(recent: Dictionary, event_id: String, info: Dictionary) -> void:
	recent.erase(event_id)
	recent[event_id] = info
	if recent.size() > RECENT_SHOTS:
		recent.erase(recent.keys()[0])


## Game seconds of one [method Node._process] step: its [param delta] (scaled by
## [member Engine.time_scale]), or real seconds with [member follow_time_scale] off.
func _game_step(delta: float) -> float:
	var usec := Time.get_ticks_usec()
	var frame := Engine.get_process_frames()
	var consecutive := frame == _last_frame + 1
	var wall := (usec - _last_usec) / 1000000.0
	_last_usec = usec
	_last_frame = frame
	if follow_time_scale:
		return delta
	if Engine.time_scale > 0.0:
		return delta / Engine.time_scale
	return wall if consecutive else 0.0  # time scale 0: delta carries no time


func _bind() -> void:
	if _texture == null or target == null or not is_instance_valid(target):
		return
	if target_property.is_empty():
		return
	target.set_indexed(NodePath(target_property), _texture)
