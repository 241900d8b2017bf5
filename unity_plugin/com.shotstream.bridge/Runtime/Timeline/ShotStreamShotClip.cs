// A Timeline clip that is one ShotStream shot: a game event of the track's prompt map (with parameters) or a prompt of
// its own, cued by the ShotStream track ahead of the clip's start.
using System;
using System.Collections.Generic;
using ShotStream.Unity;
using UnityEngine;
using UnityEngine.Playables;
using UnityEngine.Timeline;

namespace ShotStream.Timeline
{
    /// <summary>Where a clip's shot comes from.</summary>
    public enum ShotClipSource
    {
        /// <summary>A game event of the track's ShotPromptMap, its template filled from the clip's parameters (chunks and
        /// cut or wait as the map says).</summary>
        GameEvent = 0,
        /// <summary>The clip's own prompt, chunks and cut or wait.</summary>
        Prompt = 1,
    }

    /// <summary>One {name} of a game event's template and its value.</summary>
    [Serializable]
    public sealed class ShotParameter
    {
        public string name = "";
        public string value = "";
    }

    /// <summary>A shot on a <see cref="ShotStreamTrack"/>: the track cues it ahead of the clip's start so that its first frame
    /// is on screen when the clip starts.</summary>
    [Serializable]
    public sealed class ShotStreamShotClip : PlayableAsset, ITimelineClipAsset
    {
        [SerializeField] ShotClipSource source = ShotClipSource.GameEvent;
        [Tooltip("Game event of the track's Prompt Map (source Game Event)")]
        [SerializeField] string eventName = "";
        [Tooltip("The game event's template parameters")]
        [SerializeField] List<ShotParameter> parameters = new List<ShotParameter>();
        [Tooltip("The shot's prompt (source Prompt)")]
        [TextArea(1, 4)]
        [SerializeField] string prompt = "";
        [Tooltip("Chunks of the shot (source Prompt; 0 = the server's default)")]
        [SerializeField] int chunks = 0;
        [Tooltip("Cut the current shot (source Prompt); else wait for it")]
        [SerializeField] bool cut = false;

        public ShotClipSource Source { get { return source; } set { source = value; } }
        public string EventName { get { return eventName; } set { eventName = value ?? ""; } }
        public List<ShotParameter> Parameters { get { return parameters; } }
        public string Prompt { get { return prompt; } set { prompt = value ?? ""; } }
        public int Chunks { get { return chunks; } set { chunks = Math.Max(0, value); } }
        public bool Cut { get { return cut; } set { cut = value; } }

        /// <summary>A shot neither blends nor loops: its frames come from the service.</summary>
        public ClipCaps clipCaps { get { return ClipCaps.None; } }

        /// <summary>Sets a game event clip: <paramref name="name"/> with <paramref name="parameterPairs"/> (name, value, ...).</summary>
        public ShotStreamShotClip SetGameEvent(string name, params string[] parameterPairs)
        {
            source = ShotClipSource.GameEvent;
            eventName = name ?? "";
            parameters.Clear();
            for (int i = 0; parameterPairs != null && i + 1 < parameterPairs.Length; i += 2)
                parameters.Add(new ShotParameter { name = parameterPairs[i], value = parameterPairs[i + 1] });
            return this;
        }

        /// <summary>Sets a prompt clip.</summary>
        public ShotStreamShotClip SetPrompt(string text, int chunkCount = 0, bool cutCurrent = false)
        {
            source = ShotClipSource.Prompt;
            prompt = text ?? "";
            chunks = Math.Max(0, chunkCount);
            cut = cutCurrent;
            return this;
        }

        /// <summary>The shot to cue: the game event resolved through <paramref name="map"/>, or the clip's prompt. Throws as
        /// ShotPromptMap.Resolve does (unknown event, missing parameter), or when there is no map or prompt.</summary>
        public ResolvedShot Resolve(ShotPromptMap map)
        {
            if (source == ShotClipSource.Prompt)
            {
                if (string.IsNullOrEmpty(prompt)) throw new InvalidOperationException("ShotStream clip '" + name + "' has no prompt");
                return new ResolvedShot { EventName = "", Prompt = prompt, Chunks = (uint)Math.Max(0, chunks), Cut = cut };
            }
            if (map == null) throw new InvalidOperationException("ShotStream clip '" + name + "' fires game event \"" + eventName
                                                                   + "\" but its track has no Prompt Map");
            var values = new Dictionary<string, string>();
            foreach (var p in parameters) if (p != null && !string.IsNullOrEmpty(p.name)) values[p.name] = p.value ?? "";
            return map.Resolve(eventName, values);
        }

        /// <summary>Whether the clip's shot cuts the current one (a prompt clip's Cut, or its game event's; false when unresolvable).</summary>
        public bool CutsCurrent(ShotPromptMap map)
        {
            if (source == ShotClipSource.Prompt) return cut;
            try { return Resolve(map).Cut; }
            catch (Exception) { return false; }
        }

        public override Playable CreatePlayable(PlayableGraph graph, GameObject owner)
        {
            var playable = ScriptPlayable<ShotStreamShotBehaviour>.Create(graph);
            playable.GetBehaviour().Clip = this;
            return playable;
        }
    }

    /// <summary>The clip's playable: the track's mixer does the work.</summary>
    public sealed class ShotStreamShotBehaviour : PlayableBehaviour
    {
        public ShotStreamShotClip Clip;
    }
}
