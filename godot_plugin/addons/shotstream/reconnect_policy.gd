@tool
class_name ShotStreamReconnectPolicy
extends RefCounted
## Exponential backoff for reconnecting: [code]initial_delay_s * multiplier^retry[/code], capped at
## [member max_delay_s]. Same rule as the Unity plugin's ReconnectPolicy.

## Delay before the first retry (seconds).
var initial_delay_s := 0.25
## Longest delay between retries (seconds).
var max_delay_s := 10.0
## Growth factor per retry (>= 1).
var multiplier := 2.0
## Retries after a failure: 0 = never retry, negative = forever.
var max_retries := 5


## A policy with these settings.
func _init(
	initial_s: float = 0.25, max_s: float = 10.0, retries: int = 5, growth: float = 2.0
) -> void:
	initial_delay_s = maxf(initial_s, 0.0)
	max_delay_s = maxf(max_s, initial_delay_s)
	max_retries = retries
	multiplier = maxf(growth, 1.0)


## Delay in seconds before retry number [param retry] (0-based).
func delay_for(retry: int) -> float:
	var s := initial_delay_s * pow(multiplier, mini(maxi(retry, 0), 62))
	if is_nan(s) or is_inf(s) or s > max_delay_s:
		return max_delay_s
	return s


## True when retry number [param retry] (0-based) is allowed.
func should_retry(retry: int) -> bool:
	return max_retries < 0 or retry < max_retries
