@tool
class_name ShotStreamCutscene
extends Resource
## A cutscene's timeline of generated shots: a list of [ShotStreamCutsceneShot]s, each cued at its
## time. A [ShotStreamCutscenePlayer] plays it through an [AnimationPlayer] (a method track calls
## [method ShotStreamCutscenePlayer.cue_shot] at each shot's time), so the same animation can also
## move cameras, play sounds and call gameplay code.
## [codeblock]
## var scene := ShotStreamCutscene.new()
## scene.add_event(0.0, "enter", {"hero": "The knight", "place": "hall"})
## scene.add_prompt(4.0, "The doors burst open!", 1, ShotStreamCue.Mode.CUT)
## [/codeblock]

## The shots, in any order (each has its own time).
@export var shots: Array[ShotStreamCutsceneShot] = []


## Adds a shot that fires [param event_name] with [param params] at [param at_seconds]; returns
## this cutscene (for chaining).
func add_event(
	at_seconds: float, event_name: String, params: Dictionary = {}
) -> ShotStreamCutscene:
	shots.append(ShotStreamCutsceneShot.new(at_seconds, event_name, params))
	return self


## Adds a shot that cues [param prompt] as it is at [param at_seconds]; returns this cutscene.
func add_prompt(
	at_seconds: float,
	prompt: String,
	num_chunks: int = 0,
	mode: ShotStreamCue.Mode = ShotStreamCue.Mode.WAIT
) -> ShotStreamCutscene:
	shots.append(ShotStreamCutsceneShot.new(at_seconds, "", {}, prompt, num_chunks, mode))
	return self


## The time of the last cue, in seconds (0 without shots).
func length_seconds() -> float:
	var most := 0.0
	for shot: ShotStreamCutsceneShot in shots:
		if shot != null:
			most = maxf(most, shot.at_seconds)
	return most


## An [Animation] with one method track on [param target] (a path from the AnimationPlayer's root
## node to a [ShotStreamCutscenePlayer]) that calls [code]cue_shot(i)[/code] at shot i's time.
## Add tracks of your own to it: cameras, sounds, gameplay calls.
func to_animation(target: NodePath) -> Animation:
	var animation := Animation.new()
	animation.length = maxf(length_seconds(), 0.001)
	var track := animation.add_track(Animation.TYPE_METHOD)
	animation.track_set_path(track, target)
	for i in shots.size():
		if shots[i] != null:
			animation.track_insert_key(
				track, shots[i].at_seconds, {"method": &"cue_shot", "args": [i]}
			)
	return animation
