@tool
class_name ShotStreamCue
extends Resource
## One game event's shot, for a [ShotStreamShotMap]: the event name, a prompt template with
## [code]{param}[/code] placeholders, its length and whether it cuts or waits.

## How a cue meets the shot that is playing.
enum Mode {
	WAIT,  ## start after the current shot (and every queued one) ends
	CUT,  ## drop queued cues and cut the current shot at its next chunk
}

## The game event that fires this shot (the name passed to [method ShotStreamDirector.fire]).
@export var event_name := ""
## The shot prompt, e.g. "{hero} draws a sword in the {place}". [code]{{[/code] and
## [code]}}[/code] are literal braces.
@export_multiline var prompt_template := ""
## Chunks to generate: 0 = the server's full shot (7 chunks / 81 frames for the 1.3B model), else
## at most the session's max_chunks_per_shot (7 for the 1.3B model; the client refuses more).
@export_range(0, 7, 1, "or_greater") var num_chunks := 0
## Cut the current shot or wait for it.
@export var mode := Mode.WAIT
## CUT only: the cut lands once the shot in progress has made this many chunks, wherever the cue
## arrives (0 = at its next chunk boundary; a cue that arrives later cuts at the next boundary).
@export_range(0, 7, 1, "or_greater") var at_chunk := 0
## Labels echoed back on the shot's messages (the director adds the event name).
@export var tags := PackedStringArray()


## A cue for [param p_event_name] (all arguments optional, as a Resource requires).
func _init(
	p_event_name: String = "",
	p_prompt_template: String = "",
	p_num_chunks: int = 0,
	p_mode: Mode = Mode.WAIT,
	p_tags: PackedStringArray = PackedStringArray()
) -> void:
	event_name = p_event_name
	prompt_template = p_prompt_template
	num_chunks = p_num_chunks
	mode = p_mode
	tags = p_tags


## "wait" or "cut", as [method ShotStreamClient.cue] takes it.
func mode_name() -> String:
	return "cut" if mode == Mode.CUT else "wait"
