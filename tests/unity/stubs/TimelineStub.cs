// A stub of ONLY the Timeline package (com.unity.timeline 1.6, assembly Unity.Timeline) APIs that
// Runtime/Timeline uses, with their 1.6 signatures. Compiled to Unity.Timeline.dll by tests/test_unity_package.py
// against UnityEngineStub.cs (whose UnityEngine.Playables part is the DirectorModule's API). C# 7.2.
using System;
using System.Collections.Generic;
using UnityEngine.Playables;

namespace UnityEngine.Timeline
{
    [Flags]
    public enum ClipCaps { None = 0, Looping = 1, Extrapolation = 2, ClipIn = 4, SpeedMultiplier = 8, Blending = 16, All = 31 }

    public interface ITimelineClipAsset { ClipCaps clipCaps { get; } }

    public sealed class TimelineClip
    {
        public double start { get; set; }
        public double duration { get; set; }
        public double end { get { return start + duration; } }
        public Object asset { get; set; }
        public string displayName { get; set; }
    }

    public abstract class TrackAsset : PlayableAsset
    {
        readonly List<TimelineClip> clips = new List<TimelineClip>();

        public IEnumerable<TimelineClip> GetClips() { return clips; }

        /// <summary>Timeline: a clip of a new <typeparamref name="T"/> asset on this track (the stub's T needs new()).</summary>
        public TimelineClip CreateClip<T>() where T : ScriptableObject, new()
        {
            var clip = new TimelineClip { asset = ScriptableObject.CreateInstance<T>(), duration = 5, displayName = typeof(T).Name };
            clips.Add(clip);
            return clip;
        }

        public virtual Playable CreateTrackMixer(PlayableGraph graph, GameObject go, int inputCount)
        {
            return ScriptPlayable<NoMixer>.Create(graph, inputCount);
        }

        public override Playable CreatePlayable(PlayableGraph graph, GameObject go) { return CreateTrackMixer(graph, go, clips.Count); }

        sealed class NoMixer : PlayableBehaviour { }
    }

    [AttributeUsage(AttributeTargets.Class, AllowMultiple = true)]
    public class TrackClipTypeAttribute : Attribute { public readonly Type inspectedType; public TrackClipTypeAttribute(Type clipClass) { inspectedType = clipClass; } }

    [AttributeUsage(AttributeTargets.Class)]
    public class TrackBindingTypeAttribute : Attribute { public readonly Type type; public TrackBindingTypeAttribute(Type type) { this.type = type; } }

    [AttributeUsage(AttributeTargets.Class)]
    public class TrackColorAttribute : Attribute { public TrackColorAttribute(float r, float g, float b) { } }
}
