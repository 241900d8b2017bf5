@tool
class_name ShotStreamCutsceneShot
extends Resource
## One shot of a [ShotStreamCutscene]: when it is cued on the cutscene's timeline, and what: an
## event of the director's [ShotStreamShotMap] with its parameters, or a prompt as it is.

## When it is cued, in seconds from the start of the cutscene.
@export_range(0.0, 3600.0, 0.05, "or_greater", "suffix:s") var at_seconds := 0.0
## The shot map event to fire ("" = cue [member prompt] instead).
@export var event_name := ""
## The event's template parameters.
@export var params: Dictionary = {}
## Without [member event_name]: the prompt, cued as it is.
@export_multiline var prompt := ""
## Without [member event_name]: chunks of the shot (0 = the server's full shot).
@export_range(0, 7, 1, "or_greater") var num_chunks := 0
## Without [member event_name]: wait for the shots before it, or cut them.
@export var mode := ShotStreamCue.Mode.WAIT


## A shot at [param p_at_seconds] (all arguments optional, as a Resource requires).
func _init(
	p_at_seconds: float = 0.0,
	p_event_name: String = "",
	p_params: Dictionary = {},
	p_prompt: String = "",
	p_num_chunks: int = 0,
	p_mode: ShotStreamCue.Mode = ShotStreamCue.Mode.WAIT
) -> void:
	at_seconds = p_at_seconds
	event_name = p_event_name
	params = p_params
	prompt = p_prompt
	num_chunks = p_num_chunks
	mode = p_mode


## The name its cue is reported under: [member event_name], or "prompt" for a prompt shot.
func label() -> String:
	return event_name if not event_name.is_empty() else "prompt"
