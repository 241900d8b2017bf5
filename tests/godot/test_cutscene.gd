extends "res://tests/test_base.gd"
## Cutscenes without a server: the resource, its animation, the cutscene player cueing each shot
## through the director at its time (an offline client queues the cues), shots that cannot fire,
## stop(), and the demo's cutscene mixing a gameplay event into the timeline. The live run with
## a cut is in test_live.gd.

const P := preload("res://addons/shotstream/protocol.gd")


func run_tests() -> void:
	_cutscene_timeline()
	await _demo_cutscene()


## The cutscene resource becomes an animation whose method track cues each shot at its time,
## through the director (here onto an offline client, which queues the cues); a shot that cannot
## fire, and the shots a stop() leaves uncued, are over with their error.
func _cutscene_timeline() -> void:
	var scene := (
		ShotStreamCutscene
		. new()
		. add_event(0.0, "enter", {"hero": "The knight"})
		. add_prompt(1.5, "The doors burst open!", 1, ShotStreamCue.Mode.CUT)
		. add_event(1.0, "nope")
		. add_event(3.0, "enter", {"hero": "The queen"})
	)
	eq(3.0, scene.length_seconds(), "length: the last cue")
	var animation := scene.to_animation(NodePath("X"))
	eq(1, animation.get_track_count(), "one method track")
	eq(Animation.TYPE_METHOD, animation.track_get_type(0), "a method track")
	var keys: Array[String] = []
	for k in animation.track_get_key_count(0):
		keys.append(
			(
				"%.1f %s"
				% [animation.track_get_key_time(0, k), animation.method_track_get_params(0, k)]
			)
		)
	eq(["0.0 [0]", "1.0 [2]", "1.5 [1]", "3.0 [3]"], keys, "cue_shot(i) at each shot's time")
	var client := ShotStreamClient.new()
	client.connect_on_ready = false
	client.log_errors = false
	add_child(client)
	var director := ShotStreamDirector.new()
	director.log_errors = false
	director.client = client
	director.shot_map = ShotStreamShotMap.new().add("enter", "{hero} enters.", 1)
	add_child(director)
	var cutscene_player := ShotStreamCutscenePlayer.new()
	add_child(cutscene_player)
	var w := cutscene_player._get_configuration_warnings()
	check(w.size() == 2 and "Director" in w[0] and "Cutscene" in w[1], "bare: %s" % [w])
	cutscene_player.director = director
	cutscene_player.cutscene = scene
	w = cutscene_player._get_configuration_warnings()
	check(w.size() == 1 and '"nope"' in w[0], "an event the shot map lacks: %s" % [w])
	var cued: Array[String] = []
	cutscene_player.shot_cued.connect(
		func(i: int, id: String) -> void: cued.append("%d %s" % [i, id])
	)
	var done: Array[String] = []
	cutscene_player.shot_done.connect(
		func(i: int, r: Dictionary) -> void: done.append("%d %s" % [i, r["error"]])
	)
	var installed := cutscene_player.install()
	check(installed != null and installed.get_track_count() == 1, "installed")
	var ap: AnimationPlayer = cutscene_player.get_child(0, true)
	check(ap.has_animation(cutscene_player.animation_name), "in the internal AnimationPlayer")
	ap.play(cutscene_player.animation_name)  # played directly: the first cue starts the run
	ap.advance(0.0)
	eq(["0 enter-1"], cued, "t=0: shot 0 cued")
	check(cutscene_player.is_playing, "playing")
	ap.advance(1.2)
	eq(["0 enter-1", "2 "], cued, "t=1.2: shot 2 (unknown event) could not be cued")
	check(
		done.size() == 1 and done[0].begins_with("2 ShotStreamDirector: unknown event"),
		"%s" % [done]
	)
	ap.advance(0.5)
	eq(["0 enter-1", "2 ", "1 prompt-2"], cued, "t=1.7: the prompt shot (a cut)")
	var queued := client.queued_messages()
	eq(2, queued.size(), "two cues queued on the client")
	if queued.size() == 2:
		var cut_cue: Dictionary = P.decode_client_text(queued[1])["message"]
		eq(["The doors burst open!", P.CueMode.CUT], [cut_cue["prompt"], cut_cue["mode"]], "cut")
	cutscene_player.stop()
	check(
		done.size() == 2 and done[1] == "3 stopped", "stop(): shot 3 over, never cued: %s" % [done]
	)
	check(cutscene_player.is_playing, "still playing: shots 0 and 1 were cued")
	client.abort()  # their cues are dropped: the cutscene is over
	check(not cutscene_player.is_playing, "over")
	var results := cutscene_player.results
	eq(
		["not sent", "not sent", "stopped"],
		[results[0].get("error"), results[1].get("error"), results[3].get("error")],
		"every shot has a result"
	)
	for n: Node in [cutscene_player, director, client]:
		n.free()


## The demo's cutscene: explore at 0 s, a gameplay event (the knight finds the treasure, bound to
## "discover") on the same timeline at 0.5 s, the ambush cutting in at 1 s, calm at 1.5 s.
func _demo_cutscene() -> void:
	var demo: Control = load("res://demo/demo.tscn").instantiate()
	var client: ShotStreamClient = demo.get_node("Client")
	client.connect_on_ready = false
	client.log_errors = false
	add_child(demo)
	var cutscene_player: ShotStreamCutscenePlayer = demo.get_node("CutscenePlayer")
	check(cutscene_player.director == demo.get_node("Director"), "cutscene player -> director")
	eq(PackedStringArray(), cutscene_player._get_configuration_warnings(), "wired: no warning")
	var ap: AnimationPlayer = cutscene_player.get_child(0, true)
	var animation := ap.get_animation(cutscene_player.animation_name)
	eq(2, animation.get_track_count() if animation != null else 0, "cues and gameplay tracks")
	eq("cutscene", demo.handle_key(KEY_C), "C plays the cutscene")
	await get_tree().process_frame
	check(cutscene_player.is_playing, "playing")
	for _frame in 120:  # 2 s of 60 Hz game frames
		ap.advance(1.0 / 60.0)
	var prompts: Array[String] = []
	for text in client.queued_messages():
		var cue: Dictionary = P.decode_client_text(text)["message"]
		prompts.append("%s %s" % [cue["event_id"], P.enum_name("CueMode", cue["mode"])])
	eq(
		[
			"explore-1 CUE_MODE_WAIT",
			"discover-2 CUE_MODE_WAIT",
			"ambush-3 CUE_MODE_CUT",
			"calm-4 CUE_MODE_WAIT"
		],
		prompts,
		"the timeline's shots and the gameplay event, in time order"
	)
	client.abort()
	check(not cutscene_player.is_playing, "no session: the cutscene is over")
	demo.queue_free()
