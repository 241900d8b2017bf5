@tool
@icon("res://addons/shotstream/icons/cutscene.svg")
class_name ShotStreamCutscenePlayer
extends Node
## Plays a [ShotStreamCutscene] through a [ShotStreamDirector]: each shot is cued at its time by an
## [AnimationPlayer] method track, and [method play] resumes when every shot has ended on screen.
##
## [codeblock]
## var results: Array = await $CutscenePlayer.play()   # one Dictionary per shot
## [/codeblock]
## The animation comes from [method ShotStreamCutscene.to_animation]; [method install] puts it in
## [member animation_player] (or in an internal one) under [member animation_name]. Add your own
## tracks to it (cameras, sounds, calls into gameplay code): they play on the same timeline. The
## AnimationPlayer runs on the game's clock, like the [ShotStreamPlayer], so pausing the game
## pauses the cutscene's cues and its video together. Playing the animation yourself works too:
## its first cue starts the cutscene, and [signal cutscene_finished] follows the last shot.

## The cutscene started (its first shot is being cued).
signal cutscene_started
## Shot [param index] of the cutscene was cued as [param event_id] ("" when it could not be).
signal shot_cued(index: int, event_id: String)
## Shot [param index] is over: [param result] as [method ShotStreamDirector.play] returns it, plus
## [code]index[/code].
signal shot_done(index: int, result: Dictionary)
## Every shot of the cutscene is over; [param results] has one result per shot, by index.
signal cutscene_finished(results: Array)

## The shots and their times.
@export var cutscene: ShotStreamCutscene:
	set(value):
		cutscene = value
		update_configuration_warnings()
## Fires the shots (its client's player shows them; with no player, a shot is over when the
## server finished it).
@export var director: ShotStreamDirector:
	set(value):
		director = value
		update_configuration_warnings()
## Plays the cutscene's animation (null: an internal AnimationPlayer).
@export var animation_player: AnimationPlayer
## The name of the cutscene's animation in [member animation_player]'s default library.
@export var animation_name := &"shotstream_cutscene"

## True from the first cue until every shot is over.
var is_playing: bool:
	get:
		return _playing
## One result per shot, by index ({} for a shot not over yet).
var results: Array[Dictionary]:
	get:
		return _results

var _results: Array[Dictionary] = []
var _cued := PackedByteArray()
var _remaining := 0
var _playing := false
var _internal: AnimationPlayer


## Puts the cutscene's animation into [param target] (default: [member animation_player], or the
## internal one) under [member animation_name], replacing an earlier one; returns it, so tracks of
## your own can be added.
func install(target: AnimationPlayer = null) -> Animation:
	if cutscene == null:
		push_error("ShotStreamCutscenePlayer.install: no cutscene")
		return null
	var ap := target if target != null else _animation_player()
	var root := ap.get_node_or_null(ap.root_node)
	var path := root.get_path_to(self) if root != null else NodePath("..")
	var animation := cutscene.to_animation(path)
	var library: AnimationLibrary
	if ap.has_animation_library(&""):
		library = ap.get_animation_library(&"")
	else:
		library = AnimationLibrary.new()
		ap.add_animation_library(&"", library)
	if library.has_animation(animation_name):
		library.remove_animation(animation_name)
	library.add_animation(animation_name, animation)
	return animation


## Plays the cutscene from its start and returns, once every shot is over and the animation has
## ended, one result per shot (see [signal shot_done]). Use it with [code]await[/code].
func play() -> Array[Dictionary]:
	if cutscene == null or director == null:
		push_error("ShotStreamCutscenePlayer.play: set cutscene and director first")
		return []
	var ap := _animation_player()
	if not ap.has_animation(animation_name):
		install(ap)
	begin()
	ap.play(animation_name)
	ap.seek(0.0, true)
	while _playing:
		await cutscene_finished
	while ap.is_playing() and ap.current_animation == animation_name:
		await ap.animation_finished
	return _results


## Stops the animation; the shots not cued yet are over with the error "stopped" (those already
## cued still play and report as usual).
func stop() -> void:
	_animation_player().stop()
	if cutscene == null:
		return
	for i in _cued.size():
		if _cued[i] == 0:
			_cued[i] = 1
			_finish_shot(i, {"event_name": "", "event_id": "", "error": "stopped"})


## Starts a new run: forgets the last results ([method play] and the first [method cue_shot] call
## it).
func begin() -> void:
	var count := cutscene.shots.size() if cutscene != null else 0
	_results.clear()
	_results.resize(count)
	_cued = PackedByteArray()
	_cued.resize(count)
	_remaining = 0
	for i in count:
		if cutscene.shots[i] == null:
			_cued[i] = 1
			_results[i] = {"index": i, "event_name": "", "event_id": "", "error": "no shot"}
		else:
			_remaining += 1
	_playing = _remaining > 0
	cutscene_started.emit()
	if not _playing:
		cutscene_finished.emit(_results)


## Cues shot [param index] (what the animation's method track calls); returns its event id, or ""
## when it could not be cued (its result then has the error). A shot is cued once per run.
func cue_shot(index: int) -> String:
	if cutscene == null or director == null or index < 0 or index >= cutscene.shots.size():
		push_error("ShotStreamCutscenePlayer.cue_shot(%d): no such shot, or no director" % index)
		return ""
	if not _playing or _cued.size() != cutscene.shots.size():
		begin()
	if _cued[index] != 0:
		return ""
	_cued[index] = 1
	var shot: ShotStreamCutsceneShot = cutscene.shots[index]
	var event_id: String
	if shot.event_name.is_empty():
		event_id = director.cue_prompt(shot.label(), shot.prompt, shot.num_chunks, shot.mode)
	else:
		event_id = director.fire(shot.event_name, shot.params)
	shot_cued.emit(index, event_id)
	_collect(index, event_id, shot.label())
	return event_id


func _get_configuration_warnings() -> PackedStringArray:
	var warnings := PackedStringArray()
	if director == null:
		warnings.append("Set Director to a ShotStreamDirector: it fires the shots.")
	if cutscene == null:
		warnings.append("Set Cutscene to a ShotStreamCutscene resource: the shots and their times.")
		return warnings
	var known: ShotStreamShotMap = director.shot_map if director != null else null
	for i in cutscene.shots.size():
		var shot := cutscene.shots[i]
		if shot == null:
			warnings.append("Shot %d of the cutscene is empty." % i)
		elif shot.event_name.is_empty() and shot.prompt.strip_edges().is_empty():
			warnings.append("Shot %d has neither an event name nor a prompt." % i)
		elif (
			not shot.event_name.is_empty()
			and known != null
			and not known.has_event(shot.event_name)
		):
			warnings.append(
				(
					'Shot %d fires "%s", which the director\'s shot map does not have.'
					% [i, shot.event_name]
				)
			)
	return warnings


func _collect(index: int, event_id: String, label: String) -> void:
	var result: Dictionary = await director.wait_for(event_id, label)
	_finish_shot(index, result)


func _finish_shot(index: int, result: Dictionary) -> void:
	if index >= _results.size() or not _results[index].is_empty():
		return
	result["index"] = index
	_results[index] = result
	shot_done.emit(index, result)
	_remaining -= 1
	if _remaining == 0 and _playing:
		_playing = false
		cutscene_finished.emit(_results)


func _animation_player() -> AnimationPlayer:
	if animation_player != null:
		return animation_player
	if _internal == null:
		_internal = AnimationPlayer.new()
		_internal.name = "CutsceneAnimation"
		add_child(_internal, false, Node.INTERNAL_MODE_FRONT)
		_internal.root_node = NodePath("..")
		_internal.callback_mode_method = AnimationMixer.ANIMATION_CALLBACK_MODE_METHOD_IMMEDIATE
	return _internal
