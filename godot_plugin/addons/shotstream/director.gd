@tool
class_name ShotStreamDirector
extends Node
## Turns game events into shots: resolves an event through a [ShotStreamShotMap] and cues it on a
## [ShotStreamClient].
##
## [codeblock]
## director.fire("enter", {"hero": "The knight", "place": "throne room"})
## director.bind_signal($Boss, "died", "boss_down")           # a signal with no arguments
## director.bind_signal($Door, "opened_by", "enter", ["hero"]) # signal argument 0 -> {hero}
## [/codeblock]
## An unknown event or a missing parameter is an error ([signal fire_failed] and the Output panel),
## never a silently wrong prompt. Bindings last until [method unbind_all] or until the director is
## freed; leaving the tree (reparenting) keeps them.

## [param event_name] became the cue [param event_id] with [param prompt].
signal shot_cued(event_name: String, event_id: String, prompt: String)
## [param event_name] could not be fired; [param message] says why.
signal fire_failed(event_name: String, message: String)

## Signals with more arguments than this cannot be bound.
const MAX_SIGNAL_ARGS := 6

## The session the shots go to.
@export var client: ShotStreamClient
## Event names -> prompt templates.
@export var shot_map: ShotStreamShotMap
## Add the event name to each cue's tags.
@export var tag_with_event_name := true
## Print failures to the Output panel (they always go to [signal fire_failed]).
@export var log_errors := true

var _fired := 0
var _bindings: Array[Dictionary] = []


## Resolves [param event_name] with [param params] and cues it. Returns the cue's event id
## ("<event name>-<n>"), or "" when the event could not be fired (see [signal fire_failed]).
func fire(event_name: String, params: Dictionary = {}) -> String:
	if shot_map == null:
		return _fail(event_name, 'ShotStreamDirector "%s" has no shot_map' % name)
	if client == null or not is_instance_valid(client):
		return _fail(event_name, 'ShotStreamDirector "%s" has no client' % name)
	var shot := shot_map.resolve(event_name, params)
	if shot["error"] != "":
		return _fail(event_name, "ShotStreamDirector: " + String(shot["error"]))
	var tags: PackedStringArray = shot["tags"]
	if tag_with_event_name and not tags.has(event_name):
		tags.append(event_name)
	_fired += 1
	var event_id := client.cue(
		shot["prompt"], "%s-%d" % [event_name, _fired], shot["num_chunks"], shot["mode"], tags
	)
	if event_id.is_empty():
		return _fail(event_name, "ShotStreamDirector: the client refused the cue")
	shot_cued.emit(event_name, event_id, shot["prompt"])
	return event_id


## Fires [param event_name] every time [param source] emits [param signal_name]. The signal's
## arguments become template parameters by position: argument i is named [param param_names][i]
## (extra arguments are ignored). Returns OK; ERR_ALREADY_IN_USE when [param source]'s
## [param signal_name] is already bound to [param event_name] (nothing changes: it still fires
## once); ERR_INVALID_PARAMETER when the signal does not exist or has more than
## [constant MAX_SIGNAL_ARGS] arguments.
func bind_signal(
	source: Object,
	signal_name: StringName,
	event_name: String,
	param_names: PackedStringArray = PackedStringArray()
) -> Error:
	for b: Dictionary in _bindings:
		if b["source"] == source and b["signal"] == signal_name and b["event"] == event_name:
			return ERR_ALREADY_IN_USE
	var argc := signal_arg_count(source, signal_name)
	if argc < 0:
		_fail(
			event_name,
			'ShotStreamDirector.bind_signal: %s has no signal "%s"' % [source, signal_name]
		)
		return ERR_INVALID_PARAMETER
	if argc > MAX_SIGNAL_ARGS:
		_fail(
			event_name,
			(
				'ShotStreamDirector.bind_signal: "%s" has %d arguments (at most %d)'
				% [signal_name, argc, MAX_SIGNAL_ARGS]
			)
		)
		return ERR_INVALID_PARAMETER
	var f := _fire_from_signal.bind(event_name, param_names)
	var callable: Callable
	match argc:
		0:
			callable = func() -> void: f.call([])
		1:
			callable = func(a: Variant) -> void: f.call([a])
		2:
			callable = func(a: Variant, b: Variant) -> void: f.call([a, b])
		3:
			callable = func(a: Variant, b: Variant, c: Variant) -> void: f.call([a, b, c])
		4:
			callable = func(a: Variant, b: Variant, c: Variant, d: Variant) -> void:
				f.call([a, b, c, d])
		5:
			callable = (func(a: Variant, b: Variant, c: Variant, d: Variant, e: Variant) -> void:
				f.call([a, b, c, d, e]))
		_:
			callable = (func(
				a: Variant, b: Variant, c: Variant, d: Variant, e: Variant, g: Variant
			) -> void:
				f.call([a, b, c, d, e, g]))
	var err := source.connect(signal_name, callable)
	if err != OK:
		return err
	_bindings.append(
		{"source": source, "signal": signal_name, "event": event_name, "callable": callable}
	)
	return OK


## Disconnects every signal bound with [method bind_signal].
func unbind_all() -> void:
	for b: Dictionary in _bindings:
		var source: Object = b["source"]
		if is_instance_valid(source) and source.is_connected(b["signal"], b["callable"]):
			source.disconnect(b["signal"], b["callable"])
	_bindings.clear()


## Arguments of [param source]'s signal [param signal_name], or -1 when it has none by that name.
static func signal_arg_count(source: Object, signal_name: StringName) -> int:
	if source == null or not source.has_signal(signal_name):
		return -1
	for s: Dictionary in source.get_signal_list():
		if s["name"] == signal_name:
			return (s["args"] as Array).size()
	var script: Script = source.get_script()
	if script != null:
		for s: Dictionary in script.get_script_signal_list():
			if s["name"] == signal_name:
				return (s["args"] as Array).size()
	return -1


func _notification(what: int) -> void:
	if what == NOTIFICATION_PREDELETE:
		unbind_all()


func _fire_from_signal(values: Array, event_name: String, param_names: PackedStringArray) -> void:
	var params := {}
	for i in mini(values.size(), param_names.size()):
		params[param_names[i]] = values[i]
	fire(event_name, params)


func _fail(event_name: String, message: String) -> String:
	if log_errors:
		push_error(message)
	fire_failed.emit(event_name, message)
	return ""
