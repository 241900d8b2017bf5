## Declares a global class for the harness self-test: selftest_pass.gd uses it by name, without
## preload, which works only if the runner wrote .godot/global_script_class_cache.cfg.
class_name SelftestHelper
extends RefCounted

var word := "helper"


static func double(value: int) -> int:
	return value * 2
