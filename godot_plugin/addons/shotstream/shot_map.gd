@tool
class_name ShotStreamShotMap
extends Resource
## Named game events -> shot prompts: a list of [ShotStreamCue]s, resolved with parameters.
##
## [codeblock]
## var shots := ShotStreamShotMap.new()
## shots.add("enter", "{hero} enters the {place}.", 2)
## shots.add("ambush", "Bandits leap from the rocks.", 1, ShotStreamCue.Mode.CUT)
## shots.resolve("enter", {"hero": "A knight", "place": "hall"})
## # -> {"error": "", "prompt": "A knight enters the hall.", "num_chunks": 2, "mode": "wait", ...}
## [/codeblock]
## Resolving never guesses: an unknown event, a missing parameter or a malformed template is an
## error that names the problem (no prompt is sent for it).

## The events this map knows (the first cue with a name wins).
@export var cues: Array[ShotStreamCue] = []


## Adds a cue; returns this map (for chaining).
func add(
	event_name: String,
	prompt_template: String,
	num_chunks: int = 0,
	mode: ShotStreamCue.Mode = ShotStreamCue.Mode.WAIT,
	tags: PackedStringArray = PackedStringArray()
) -> ShotStreamShotMap:
	cues.append(ShotStreamCue.new(event_name, prompt_template, num_chunks, mode, tags))
	return self


## The cue for [param event_name], or null.
func find_cue(event_name: String) -> ShotStreamCue:
	for c: ShotStreamCue in cues:
		if c != null and c.event_name == event_name:
			return c
	return null


## True when the map has [param event_name].
func has_event(event_name: String) -> bool:
	return find_cue(event_name) != null


## Every event name, in order.
func event_names() -> PackedStringArray:
	var out := PackedStringArray()
	for c: ShotStreamCue in cues:
		if c != null:
			out.append(c.event_name)
	return out


## Fills [param event_name]'s template from [param params] (values of any type, written with
## [method @GlobalScope.str]). Returns [code]{"error": "", "event_name", "prompt", "num_chunks",
## "mode" ("wait"/"cut"), "tags", "at_chunk" (0 for a WAIT cue)}[/code], or a non-empty "error"
## naming an unknown event (and the known ones), every missing parameter, or a malformed template.
func resolve(event_name: String, params: Dictionary = {}) -> Dictionary:
	var c := find_cue(event_name)
	if c == null:
		var known := PackedStringArray()
		for n in event_names():
			known.append('"%s"' % n)
		return {
			"error":
			(
				'unknown event "%s" (known: %s)'
				% [event_name, "none" if known.is_empty() else ", ".join(known)]
			)
		}
	if c.num_chunks < 0:
		return {"error": 'event "%s" has negative num_chunks %d' % [event_name, c.num_chunks]}
	var filled := fill(event_name, c.prompt_template, params)
	if filled["error"] != "":
		return {"error": filled["error"]}
	if String(filled["text"]).strip_edges().is_empty():
		return {"error": 'event "%s" has an empty prompt' % event_name}
	return {
		"error": "",
		"event_name": event_name,
		"prompt": filled["text"],
		"num_chunks": c.num_chunks,
		"mode": c.mode_name(),
		"tags": c.tags.duplicate(),
		"at_chunk": c.at_chunk if c.mode == ShotStreamCue.Mode.CUT else 0,
	}


## Substitutes [code]{name}[/code] placeholders of [param template] from [param params]:
## [code]{"text": String, "error": String}[/code]. [code]{{[/code] / [code]}}[/code] are
## literal braces; an unclosed or empty placeholder, a stray [code]}[/code] or missing parameters
## are errors.
static func fill(event_name: String, template: String, params: Dictionary) -> Dictionary:
	var out := ""
	var missing := PackedStringArray()
	var i := 0
	var n := template.length()
	while i < n:
		var c := template[i]
		if c == "{":
			if i + 1 < n and template[i + 1] == "{":
				out += "{"
				i += 2
				continue
			var end := template.find("}", i + 1)
			if end < 0:
				return _fill_error(
					(
						'event "%s": unclosed \'{\' at position %d in template "%s"'
						% [event_name, i, template]
					)
				)
			var key := template.substr(i + 1, end - i - 1).strip_edges()
			if key.is_empty() or "{" in key:
				return _fill_error(
					(
						'event "%s": bad placeholder at position %d in template "%s"'
						% [event_name, i, template]
					)
				)
			if params.has(key) and params[key] != null:
				out += str(params[key])
			elif not missing.has(key):
				missing.append(key)
			i = end + 1
		elif c == "}":
			if i + 1 < n and template[i + 1] == "}":
				out += "}"
				i += 2
				continue
			return _fill_error(
				(
					"event \"%s\": stray '}' at position %d in template \"%s\" (use '}}')"
					% [event_name, i, template]
				)
			)
		else:
			out += c
			i += 1
	if not missing.is_empty():
		var names := PackedStringArray()
		for m in missing:
			names.append("{%s}" % m)
		return _fill_error(
			(
				'event "%s": missing parameter%s %s for template "%s"'
				% [event_name, "s" if missing.size() > 1 else "", ", ".join(names), template]
			)
		)
	return {"text": out, "error": ""}


static func _fill_error(message: String) -> Dictionary:
	return {"text": "", "error": message}
