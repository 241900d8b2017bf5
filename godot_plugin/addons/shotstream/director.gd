@tool
@icon("res://addons/shotstream/icons/director.svg")
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
## freed; leaving the tree (reparenting) keeps them.[br][br]
## [b]Per-event signals[/b]: each shot the director cued is reported under its event name when it
## starts and finishes on the server ([signal shot_started], [signal shot_finished]) and when it
## is presented and ends on screen ([signal shot_presented], [signal shot_ended], from the
## client's [member ShotStreamClient.player]); [signal shot_dropped] when it will never play.
## [method play] fires an event and waits for its shot:
## [codeblock]
## var shot := await director.play("enter", {"hero": "The knight", "place": "hall"})
## if shot["error"] != "":
##     print("no shot: ", shot["error"])
## [/codeblock]

## [param event_name] became the cue [param event_id] with [param prompt].
signal shot_cued(event_name: String, event_id: String, prompt: String)
## [param event_name] could not be fired; [param message] says why.
signal fire_failed(event_name: String, message: String)
## The shot of [param event_name] (cue [param event_id]) started on the server ([param shot]: the
## ShotStarted message).
signal shot_started(event_name: String, event_id: String, shot: Dictionary)
## The shot of [param event_name] has all its frames (ShotFinished; it still has frames to show).
signal shot_finished(event_name: String, event_id: String, shot: Dictionary)
## The first frame of the shot of [param event_name] went on screen
## ([signal ShotStreamPlayer.shot_presented]'s Dictionary).
signal shot_presented(event_name: String, event_id: String, shot: Dictionary)
## The last frame of the shot of [param event_name] is on screen
## ([signal ShotStreamPlayer.shot_ended]'s Dictionary).
signal shot_ended(event_name: String, event_id: String, shot: Dictionary)
## The cue of [param event_name] will never play ([param reason]: refused by the server, dropped by
## a cut, the session ended); also reported as [signal fire_failed] when the server refused it.
signal shot_dropped(event_name: String, event_id: String, reason: String)
## A [method play] call is over: [param result] is what it returns.
signal played(event_name: String, event_id: String, result: Dictionary)

## Signals with more arguments than this cannot be bound.
const MAX_SIGNAL_ARGS := 6

## The session the shots go to.
@export var client: ShotStreamClient:
	set(value):
		_listen(value)
		client = value
		update_configuration_warnings()
## Event names -> prompt templates.
@export var shot_map: ShotStreamShotMap:
	set(value):
		shot_map = value
		update_configuration_warnings()
## Add the event name to each cue's tags.
@export var tag_with_event_name := true
## Print failures to the Output panel (they always go to [signal fire_failed]).
@export var log_errors := true

var _fired := 0
var _bindings: Array[Dictionary] = []
var _events: Dictionary = {}  # event id -> event name, for this director's cues until they end
var _plays: Dictionary = {}  # event id -> true (wait for the screen) / false, for play() calls
var _results: Dictionary = {}  # event id -> play()'s result, until play() takes it
var _listening: ShotStreamClient
var _player: ShotStreamPlayer
var _last_failure := ""


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
	return _cue(
		event_name, shot["prompt"], shot["num_chunks"], shot["mode"], shot["tags"], shot["at_chunk"]
	)


## Cues [param prompt] as it is (no shot map), reported under [param label] like an event (its
## event id is "<label>-<n>"; the signals and [method wait_for] treat it as one).
func cue_prompt(
	label: String,
	prompt: String,
	num_chunks: int = 0,
	mode: ShotStreamCue.Mode = ShotStreamCue.Mode.WAIT,
	tags: PackedStringArray = PackedStringArray()
) -> String:
	if client == null or not is_instance_valid(client):
		return _fail(label, 'ShotStreamDirector "%s" has no client' % name)
	return _cue(
		label, prompt, num_chunks, "cut" if mode == ShotStreamCue.Mode.CUT else "wait", tags
	)


func _cue(
	event_name: String,
	prompt: String,
	num_chunks: int,
	mode: String,
	tags: PackedStringArray,
	at_chunk: int = 0
) -> String:
	tags = tags.duplicate()
	if tag_with_event_name and not tags.has(event_name):
		tags.append(event_name)
	_fired += 1
	var event_id := client.cue(
		prompt, "%s-%d" % [event_name, _fired], num_chunks, mode, tags, at_chunk
	)
	if event_id.is_empty():
		return _fail(event_name, "ShotStreamDirector: the client refused the cue")
	_listen(client)
	_events[event_id] = event_name
	shot_cued.emit(event_name, event_id, prompt)
	return event_id


## Shown in the Scene dock: what the director needs before it can fire events.
func _get_configuration_warnings() -> PackedStringArray:
	var warnings := PackedStringArray()
	if client == null:
		warnings.append("Set Client to a ShotStreamClient node: the shots are cued on it.")
	if shot_map == null:
		warnings.append(
			"Set Shot Map to a ShotStreamShotMap resource: it turns events into prompts."
		)
	elif shot_map.cues.is_empty():
		warnings.append("The Shot Map has no cues: add a ShotStreamCue for each event.")
	else:
		var seen := {}
		for c: ShotStreamCue in shot_map.cues:
			if c == null or c.event_name.strip_edges().is_empty():
				warnings.append("A cue of the Shot Map has no Event Name: it can never fire.")
			elif seen.has(c.event_name):
				warnings.append(
					'Two cues of the Shot Map are named "%s": only the first fires.' % c.event_name
				)
			else:
				seen[c.event_name] = true
	return warnings


## Fires [param event_name] and waits until its shot has ended on screen (with a
## [member ShotStreamClient.player]; without one, until the server finished it). Use it with
## [code]await[/code]. Returns the event's result: [code]event_name[/code], [code]event_id[/code],
## [code]error[/code] ("" when the shot played; otherwise why not: the event could not be fired,
## the server refused the cue, a cut dropped it, the session ended), and the fields of
## [signal ShotStreamPlayer.shot_ended] (or of ShotFinished without a player).
func play(event_name: String, params: Dictionary = {}) -> Dictionary:
	return await wait_for(fire(event_name, params), event_name)


## Waits for the cue [param event_id] that [method fire] or [method cue_prompt] just returned
## (call it right away, before its shot can end) and returns what [method play] returns. An empty
## [param event_id] (the cue failed) returns at once with the last failure under
## [param event_name].
func wait_for(event_id: String, event_name: String = "") -> Dictionary:
	if event_id.is_empty():
		return {"event_name": event_name, "event_id": "", "error": _last_failure}
	_plays[event_id] = _player != null
	while not _results.has(event_id):
		await played
	var result: Dictionary = _results[event_id]
	_results.erase(event_id)
	return result


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
		_listen(null)


## Follows [param to]'s signals (and its player's), instead of the client followed so far.
func _listen(to: ShotStreamClient) -> void:
	if _listening != to:
		if _listening != null and is_instance_valid(_listening):
			_listening.shot_started.disconnect(_on_shot_started)
			_listening.shot_finished.disconnect(_on_shot_finished)
			_listening.cue_dropped.disconnect(_on_cue_dropped)
		_listening = to
		if to != null:
			to.shot_started.connect(_on_shot_started)
			to.shot_finished.connect(_on_shot_finished)
			to.cue_dropped.connect(_on_cue_dropped)
	var player: ShotStreamPlayer = null
	if to != null and is_instance_valid(to.player):
		player = to.player
	if _player != player:
		if _player != null and is_instance_valid(_player):
			_player.shot_presented.disconnect(_on_shot_presented)
			_player.shot_ended.disconnect(_on_shot_ended)
		_player = player
		if player != null:
			player.shot_presented.connect(_on_shot_presented)
			player.shot_ended.connect(_on_shot_ended)


func _on_shot_started(shot: Dictionary) -> void:
	var id: String = shot["event_id"]
	if _events.has(id):
		shot_started.emit(_events[id], id, shot)


func _on_shot_finished(shot: Dictionary) -> void:
	var id: String = shot["event_id"]
	if not _events.has(id):
		return
	var event_name: String = _events[id]
	if _player == null:  # nothing will report the screen: this is the end
		_events.erase(id)
		_done(id, event_name, shot, "", false)
	shot_finished.emit(event_name, id, shot)


func _on_shot_presented(shot: Dictionary) -> void:
	var id: String = shot["event_id"]
	if _events.has(id):
		shot_presented.emit(_events[id], id, shot)


func _on_shot_ended(shot: Dictionary) -> void:
	var id: String = shot["event_id"]
	if not _events.has(id):
		return
	var event_name: String = _events[id]
	_events.erase(id)
	_done(id, event_name, shot, "", true)
	shot_ended.emit(event_name, id, shot)


func _on_cue_dropped(id: String, reason: String) -> void:
	if not _events.has(id):
		return
	var event_name: String = _events[id]
	_events.erase(id)
	_done(id, event_name, {}, reason, true)
	_done(id, event_name, {}, reason, false)
	if reason not in ["dropped by a cut", "the session ended", "not sent"]:  # the server refused it
		_last_failure = reason
		fire_failed.emit(event_name, reason)  # the client has logged it already
	shot_dropped.emit(event_name, id, reason)


## Completes a [method play] waiting for [param id] whose end is the screen's ([param screen]) or
## the server's.
func _done(id: String, event_name: String, shot: Dictionary, error: String, screen: bool) -> void:
	if not _plays.has(id) or _plays[id] != screen:
		return
	_plays.erase(id)
	var result := shot.duplicate()
	result["event_name"] = event_name
	result["event_id"] = id
	result["error"] = error
	_results[id] = result
	played.emit(event_name, id, result)


func _fire_from_signal(values: Array, event_name: String, param_names: PackedStringArray) -> void:
	var params := {}
	for i in mini(values.size(), param_names.size()):
		params[param_names[i]] = values[i]
	fire(event_name, params)


func _fail(event_name: String, message: String) -> String:
	_last_failure = message
	if log_errors:
		push_error(message)
	fire_failed.emit(event_name, message)
	return ""
