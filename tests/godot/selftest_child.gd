## A global class whose base is another global class (the cache's "base" must name it).
class_name SelftestChild
extends SelftestHelper


func _init() -> void:
	word = "child"
