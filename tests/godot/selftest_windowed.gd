## Harness self-test for headless=False: Godot runs a real display server and renders through
## WebGL 2 (SwiftShader); a texture's pixels survive the round trip through it.
extends "res://tests/test_base.gd"


func run_tests() -> void:
	check(DisplayServer.get_name() != "headless", "a real display server")
	var image := Image.create_empty(4, 2, false, Image.FORMAT_RGB8)
	image.fill(Color8(10, 200, 30))
	image.set_pixel(3, 1, Color8(250, 0, 128))
	var texture := ImageTexture.create_from_image(image)
	await get_tree().process_frame
	var back := texture.get_image()
	check(back != null, "texture read back")
	if back != null:
		back.convert(Image.FORMAT_RGB8)
		eq(image.get_data(), back.get_data(), "texture pixels round trip")
