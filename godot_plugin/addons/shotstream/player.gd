@tool
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
## [b]No per-frame allocation[/b] with RGBA8 frames (the default): the texture and its [Image] are
## created once per frame size and updated in place ([method Image.blit_rect] +
## [method ImageTexture.update]); each chunk's pixels are wrapped, without a copy, in one Image
## holding its frames stacked vertically. With RGB8 frames the Forward+ and Mobile renderers
## convert each update to RGBA (a copy per frame) on GPUs without a 3-byte texture format (most
## desktop GPUs).[br][br]
## Give it to a [ShotStreamClient] ([member ShotStreamClient.player]) and the client feeds it and
## acks each chunk once its last frame is on screen.[br][br]
## [b]The game's clock[/b]: playback runs on [member clock_seconds], which [method Node._process]
## advances by its delta. So pausing the SceneTree pauses the video (nothing is dropped: it goes on
## where it stopped; set [member Node.process_mode] to [constant Node.PROCESS_MODE_ALWAYS] to keep
## it playing), [member Engine.time_scale] slows it down or stops it (turn
## [member follow_time_scale] off to play at real speed), and while it is paused the client's acks
## wait, so generation waits too. A frame of the game longer than a frame of the video (a hitch, a
## background tab, a debugger break) is a stall: [member catch_up] decides what happens, and
## [signal stalled] reports it.

## A new texture object was created (first frame size, or the size changed).
signal texture_created(texture: ImageTexture)
## Frame [param frame_index] (arrival order, 0 = first) went on screen.
signal frame_presented(frame_index: int)
## A frame went up [param late_seconds] after its slot (the game's clock jumped: a hitch, a
## background tab); [param skipped] frames were skipped to catch up (always 0 with
## [constant ShotStreamJitterBuffer.CatchUp.DELAY]).
signal stalled(late_seconds: float, skipped: int)

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


## Queues a chunk's frames (a FrameChunk with pixels, as [signal ShotStreamClient.chunk_received]
## gives it). [param now] in seconds on [member clock_seconds]' clock (NAN = now). Returns the
## frames accepted.
func push_chunk(chunk: Dictionary, now: float = NAN) -> int:
	var n: int = chunk["num_frames"]
	var w: int = chunk["width"]
	var h: int = chunk["height"]
	var fmt: int = chunk["frame_format"]
	var pixels: PackedByteArray = chunk["pixels"]
	if pixels.size() != ShotStreamProtocol.expected_pixel_bytes(chunk) or n < 1:
		push_error(
			(
				"ShotStreamPlayer: chunk %s has %d pixel bytes for %d frames of %dx%d: not playable"
				% [ShotStreamProtocol.u64_to_string(chunk["chunk_seq"]), pixels.size(), n, w, h]
			)
		)
		return 0
	if fmt == ShotStreamProtocol.FrameFormat.UNSPECIFIED:
		fmt = ShotStreamProtocol.FrameFormat.RGB8
	if _jitter == null or w != _width or h != _height or fmt != _frame_format:
		var rate := _jitter.fps if _jitter != null else fps
		var capacity := _jitter.capacity if _jitter != null else capacity_frames
		configure(w, h, rate, capacity, mini(start_frames, n), fmt)
	# the chunk's frames stacked vertically: frame i is rows [i * h, (i + 1) * h); no copy
	var image := Image.create_from_data(w, h * n, false, _image_format, pixels)
	var accepted := _jitter.push(image, n, _clock if is_nan(now) else now)
	pushed_frames += accepted
	return accepted


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
	var source: Image = _jitter.frame_source
	_frame_image.blit_rect(
		source, Rect2i(0, _jitter.frame_offset * _height, _width, _height), Vector2i.ZERO
	)
	_texture.update(_frame_image)
	presented_frame_index = _jitter.frame_index
	frame_presented.emit(presented_frame_index)
	return true


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
