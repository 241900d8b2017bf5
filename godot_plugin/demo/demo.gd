extends Control
## ShotStream demo: number keys fire game events, the director turns them into shots and the
## player shows them on the full-screen TextureRect.
##
## 1 explore, 2 find treasure (a signal bound to an event), 3 ambush (cuts), 4 calm (waits),
## C the cutscene, P pause/resume generation, T start/stop a take. Start the service first:
## [code]shotstream serve[/code] (gateway on ws://127.0.0.1:50052/v1/direct).

## The game emits this; the director is bound to it (see _ready).
signal treasure_found(item: String)

const ITEMS := ["sword", "lantern", "map", "crown"]

## Who the shots are about ({hero} in the prompts).
@export var hero_name := "A young knight in a blue cloak"
## When, in the cutscene, the knight finds the treasure (a gameplay event on its timeline).
@export var cutscene_treasure_at := 0.5

# What the server was last told (the server sends Stats only with chunks, so not while paused).
var _paused := false
var _recording := false  # between take_started and take_saved
var _found := 0
var _shot_line := ""

@onready var client: ShotStreamClient = $Client
@onready var player: ShotStreamPlayer = $Player
@onready var director: ShotStreamDirector = $Director
@onready var status: Label = $Status
@onready var cutscene_player: ShotStreamCutscenePlayer = $CutscenePlayer


func _ready() -> void:
	director.bind_signal(self, "treasure_found", "discover", PackedStringArray(["item"]))
	client.state_changed.connect(func(_s: int) -> void: _refresh())
	client.connected.connect(func(_session: Dictionary) -> void: _paused = false)
	client.disconnected.connect(_on_disconnected)
	client.shot_started.connect(
		func(shot: Dictionary) -> void:
			_show("Shot %d: %s" % [shot["shot_index"], shot["event_id"]])
	)
	client.take_started.connect(
		func(_take_name: String, path: String) -> void:
			_recording = true
			_show("Recording into %s" % path)
	)
	client.take_saved.connect(
		func(take: Dictionary) -> void:
			_recording = false
			_show("Take saved: %s" % take["path"])
	)
	client.error_received.connect(
		func(_code: int, message: String, _fatal: bool) -> void: _show(message)
	)
	director.fire_failed.connect(func(_e: String, message: String) -> void: _show(message))
	# the cutscene's timeline (explore, ambush cutting in, calm) gets a gameplay event of its own:
	# the knight finds the treasure, which the director turns into a shot like key 2 does
	var animation := cutscene_player.install()
	var track := animation.add_track(Animation.TYPE_METHOD)
	animation.track_set_path(track, cutscene_player.get_path_to(self))
	animation.track_insert_key(
		track, cutscene_treasure_at, {"method": &"find_treasure", "args": []}
	)
	_refresh()


func _unhandled_input(event: InputEvent) -> void:
	var key := event as InputEventKey
	if key == null or not key.pressed or key.echo:
		return
	if handle_key(key.keycode) != "":
		get_viewport().set_input_as_handled()


## Does what [param keycode] is bound to; returns what it did ("" for an unbound key).
func handle_key(keycode: Key) -> String:
	var did := ""
	match keycode:
		KEY_1:
			director.fire("explore", {"hero": hero_name})
			did = "explore"
		KEY_2:
			find_treasure()
			did = "discover"
		KEY_3:
			director.fire("ambush", {"hero": hero_name})
			did = "ambush"
		KEY_4:
			director.fire("calm")
			did = "calm"
		KEY_C:
			if not cutscene_player.is_playing:
				play_cutscene()
			did = "cutscene"
		KEY_P:
			did = "resume" if _paused else "pause"
			if _paused:
				client.resume()
			else:
				client.pause()
			if client.is_session_open():  # sent (else the client reported the error)
				_paused = not _paused
		KEY_T:
			did = "take"
			if _recording:
				client.stop_take()  # _recording changes when the server answers
			else:
				client.start_take()
	return did


## Gameplay: the knight finds the next treasure ([signal treasure_found], bound to "discover").
func find_treasure() -> void:
	_found += 1
	treasure_found.emit(ITEMS[_found % ITEMS.size()])


## Plays the cutscene and returns its results once its last shot has ended on screen.
func play_cutscene() -> Array[Dictionary]:
	_show("Cutscene...")
	var results := await cutscene_player.play()
	var played := results.filter(func(r: Dictionary) -> bool: return r["error"] == "")
	_show("Cutscene over: %d of %d shots played" % [played.size(), results.size()])
	return results


## True while generation is paused (as far as this demo knows).
func is_paused() -> bool:
	return _paused


## True while a take is recording (between take_started and take_saved).
func is_recording() -> bool:
	return _recording


func _on_disconnected(_reason: String) -> void:
	_paused = false
	_recording = false


func _show(line: String) -> void:
	_shot_line = line
	_refresh()


func _refresh() -> void:
	var state: String = ShotStreamClient.State.keys()[client.state]
	status.text = (
		(
			"ShotStream %s - %s\n1 explore  2 treasure  3 ambush (cut)  4 calm  C cutscene"
			+ "  P pause  T take\n%s"
		)
		% [state.capitalize(), client.server_url, _shot_line]
	)
