@tool
class_name ShotStreamJitterBuffer
extends RefCounted
## Fixed-rate playback queue: frames arrive in bursts (a chunk of 9 or 12 at a time) and leave at a
## steady rate (16 fps by default).
##
## Time is injected (seconds on any monotonic clock), so the buffer is deterministic to test.
## [br][br] [b]Schedule[/b]: playback (re)starts at time t0 with the oldest queued frame; queued
## frame k after it is due at t0 + k / fps exactly (computed from t0, never accumulated: no drift).
## When a frame is due and none is queued: underrun, the last frame is held and playback restarts
## (new t0) once the start threshold is met again.[br][br] [b]Stalls[/b]: the clock is the game's
## (the player feeds it its game time, which stops while the game is paused). A poll that comes a
## whole frame slot or more late means the clock jumped (a long hitch, a background tab, a
## debugger break); [member catch_up] decides: [constant CatchUp.DELAY] (default) shows the next
## frame now and restarts the schedule from it, so nothing is dropped and playback runs later by
## the stall; [constant CatchUp.SKIP] skips the frames whose slots passed (counted in
## [member skipped_frames]) to stay on the clock. Each stall is counted in [member stalls].[br][br]
## [b]Frames
## are references[/b], not copies: [method push] queues "frame [code]first + i[/code] of
## [code]source[/code]" for any source (the player passes one Image per chunk holding its frames
## stacked vertically), so queuing and presenting allocate nothing. [method advance] says which
## frame is on screen through [member frame_source], [member frame_offset] and [member frame_index].
## [br][br]Same semantics as the Unity plugin's JitterBuffer.

## Playback state.
enum State {
	STARTING,  ## nothing presented yet: waiting for the start threshold
	PLAYING,  ## presenting one frame every 1/fps seconds
	REBUFFERING,  ## underrun: holding the last frame until the start threshold is met again
	ENDED,  ## [method complete_adding] was called and every frame was presented
}

## What [method push] does with frames that do not fit.
enum OverflowPolicy {
	REFUSE,  ## accept only what fits (lossless: do not ack what was refused, back-pressure applies)
	DROP_OLDEST,  ## drop the oldest queued frames to make room (bounded latency; loses frames)
}

## What [method advance] does when it is polled a whole frame slot or more late (a stall).
enum CatchUp {
	DELAY,  ## show every frame: the next one goes up now and the schedule restarts from it
	SKIP,  ## stay on the clock: skip the frames whose slots passed (counted, never silent)
}

## Frames the queue holds at most.
var capacity: int:
	get:
		return _capacity
## Presentation rate.
var fps: float:
	get:
		return _fps
## (Re)start once this many frames are queued...
var start_frames: int:
	get:
		return _start_frames
## ...or once the oldest queued frame has waited this long (seconds; <= 0: frame threshold only).
var start_seconds: float:
	get:
		return _start_seconds
## What to do when a push does not fit.
var overflow_policy: OverflowPolicy:
	get:
		return _policy
## What a late poll does (see [enum CatchUp]); may be changed at any time.
var catch_up: CatchUp = CatchUp.DELAY
## Current [enum State].
var state: State = State.STARTING:
	get:
		return _state
## Frames waiting to be presented.
var queued_frames: int:
	get:
		return _count

## Underrun episodes (a frame was due and none was queued), not counting the end of the stream.
var underruns := 0
## Frames presented on their slot.
var presented_frames := 0
## Frames skipped by [constant CatchUp.SKIP] because a poll came after their slot had passed.
var skipped_frames := 0
## Late polls (a whole frame slot or more late while frames were queued), under either policy.
var stalls := 0
## How late the last stall's poll was, in seconds (0 before any).
var last_stall_seconds := 0.0
## Frames dropped by [constant OverflowPolicy.DROP_OLDEST].
var dropped_frames := 0
## Frames not accepted by [constant OverflowPolicy.REFUSE].
var refused_frames := 0
## Frames accepted so far (the arrival index of the next frame).
var pushed_frames := 0

## After [method advance]: the source of the frame on screen (null before the first frame).
var frame_source: Variant = null
## After [method advance]: the frame's index within [member frame_source].
var frame_offset := -1
## After [method advance]: the frame's arrival index (0 = first frame ever pushed), -1 before any.
var frame_index := -1
## After [method advance]: true when the frame on screen changed since the previous call.
var frame_is_new := false
## After [method advance]: true when nothing is playing and the last frame is held.
var frame_is_held := false

var _capacity := 1
var _fps := 16.0
var _start_frames := 1
var _start_seconds := 0.0
var _policy := OverflowPolicy.REFUSE
var _state := State.STARTING
var _sources: Array = []  # ring of frame sources, oldest at _head
var _offsets := PackedInt64Array()
var _indices := PackedInt64Array()
var _head := 0
var _count := 0
var _last_returned := -1
var _t0 := 0.0
var _scheduled := 0
var _wait_since := NAN
var _ended := false


## A buffer of [param capacity_frames] frames presented at [param frames_per_second]; playback
## (re)starts at [param start_frame_count] frames or after [param start_wait_seconds].
func _init(
	capacity_frames: int = 64,
	frames_per_second: float = 16.0,
	start_frame_count: int = 1,
	start_wait_seconds: float = 0.0,
	policy: OverflowPolicy = OverflowPolicy.REFUSE,
	catch_up_policy: CatchUp = CatchUp.DELAY
) -> void:
	if capacity_frames < 1:
		push_error("ShotStreamJitterBuffer: capacity must be >= 1, got %d" % capacity_frames)
		capacity_frames = 1
	if not frames_per_second > 0.0 or is_inf(frames_per_second):
		push_error("ShotStreamJitterBuffer: fps must be > 0, got %s" % frames_per_second)
		frames_per_second = 16.0
	if start_frame_count < 1 or start_frame_count > capacity_frames:
		push_error(
			(
				"ShotStreamJitterBuffer: start frames must be in [1, %d], got %d"
				% [capacity_frames, start_frame_count]
			)
		)
		start_frame_count = clampi(start_frame_count, 1, capacity_frames)
	_capacity = capacity_frames
	_fps = frames_per_second
	_start_frames = start_frame_count
	_start_seconds = start_wait_seconds
	_policy = policy
	catch_up = catch_up_policy
	_sources.resize(_capacity)
	_offsets.resize(_capacity)
	_indices.resize(_capacity)


## Queues frames [param first] .. [param first] + [param count] - 1 of [param source], arrived at
## [param now] (seconds). Returns the frames accepted: all, except under
## [constant OverflowPolicy.REFUSE] when the queue is full.
func push(source: Variant, count: int, now: float, first: int = 0) -> int:
	if count < 0:
		push_error("ShotStreamJitterBuffer.push: negative frame count %d" % count)
		return 0
	if _ended:
		push_error("ShotStreamJitterBuffer.push after complete_adding()")
		return 0
	var accepted := 0
	for f in count:
		if _count == _capacity:
			if _policy == OverflowPolicy.REFUSE:
				refused_frames += count - f
				break
			_sources[_head] = null  # drop the oldest
			_head = (_head + 1) % _capacity
			_count -= 1
			dropped_frames += 1
		var tail := (_head + _count) % _capacity
		_sources[tail] = source
		_offsets[tail] = first + f
		_indices[tail] = pushed_frames
		pushed_frames += 1
		_count += 1
		accepted += 1
	if accepted > 0 and is_nan(_wait_since):
		_wait_since = now
	return accepted


## No more frames will come: play out what is queued without waiting for the start threshold,
## and do not count the final empty queue as an underrun.
func complete_adding() -> void:
	_ended = true


## Drops everything queued and on screen and starts over (e.g. a new session); keeps the counters.
func reset() -> void:
	for i in _capacity:
		_sources[i] = null
	_head = 0
	_count = 0
	frame_source = null
	frame_offset = -1
	frame_index = -1
	frame_is_new = false
	frame_is_held = false
	_last_returned = -1
	_wait_since = NAN
	_ended = false
	_state = State.STARTING


## Moves the playback to [param now] (seconds, non-decreasing between calls). Returns false only
## while nothing has been presented yet; otherwise the frame to show is in [member frame_source] /
## [member frame_offset] / [member frame_index], with [member frame_is_new] when it changed.
func advance(now: float) -> bool:
	if _state == State.STARTING or _state == State.REBUFFERING:
		if _ready_to_start(now):
			_state = State.PLAYING
			_t0 = now
			_scheduled = 0
			_wait_since = NAN
		elif _state == State.REBUFFERING and _ended and _count == 0:
			_state = State.ENDED
	if _state == State.PLAYING:
		# the schedule position due now, with a tolerance so that t0 + k/fps presents frame k
		var due := floori((now - _t0) * _fps + 1e-9)
		if due > _scheduled and _count > 0:  # a stall: the next frame's slot passed a slot ago
			stalls += 1
			last_stall_seconds = now - (_t0 + _scheduled / _fps)
			if catch_up == CatchUp.DELAY:
				_t0 = now - _scheduled / _fps  # the next frame's slot is now
				due = _scheduled
		while _scheduled <= due:
			if _count == 0:
				if _ended:
					_state = State.ENDED
				else:
					underruns += 1
					_state = State.REBUFFERING
				_wait_since = NAN
				break
			var skipping := _scheduled < due and _count > 1
			frame_source = _sources[_head]
			frame_offset = _offsets[_head]
			frame_index = _indices[_head]
			_sources[_head] = null
			_head = (_head + 1) % _capacity
			_count -= 1
			_scheduled += 1
			if skipping:
				skipped_frames += 1
			else:
				presented_frames += 1
	if frame_index < 0:
		frame_is_new = false
		frame_is_held = false
		return false
	frame_is_new = frame_index != _last_returned
	frame_is_held = _state != State.PLAYING
	_last_returned = frame_index
	return true


## Time (same clock) at which the next queued frame is due, or NAN when not playing.
func next_due_seconds() -> float:
	return _t0 + _scheduled / _fps if _state == State.PLAYING else NAN


func _ready_to_start(now: float) -> bool:
	if _count == 0:
		return false
	if _count >= _start_frames or _ended:
		return true
	return (
		_start_seconds > 0.0
		and not is_nan(_wait_since)
		and now - _wait_since >= _start_seconds - 1e-9
	)
