// A stub of ONLY the Timeline package (com.unity.timeline 1.6, assembly Unity.Timeline) APIs that
// Runtime/Timeline and the Event Shots sample's cutscene use, with their 1.6 signatures. Compiled to Unity.Timeline.dll
// by tests/test_unity_package.py against UnityEngineStub.cs (whose UnityEngine.Playables part is the DirectorModule's
// API). A TimelineAsset played by the stub's PlayableDirector (PlayableDirector.StepAllForTests) does what Timeline does
// each frame, as far as the package can tell: each track's mixer processes the frame with the track's binding, and the
// markers the time passed (after the last frame's time, up to this one's) are sent to the INotificationReceivers on the
// director's GameObject (the timeline's marker track; other tracks' markers are not modelled). C# 7.2.
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

    /// <summary>Timeline: a point in time on a track.</summary>
    public interface IMarker
    {
        double time { get; set; }
        TrackAsset parent { get; }
        void Initialize(TrackAsset parent);
    }

    public abstract class Marker : ScriptableObject, IMarker
    {
        public double time { get; set; }
        public TrackAsset parent { get; private set; }
        void IMarker.Initialize(TrackAsset parent) { this.parent = parent; }
    }

    /// <summary>Timeline: what a SignalEmitter emits (an asset of its own, so that receivers can react to it by reference).</summary>
    public class SignalAsset : ScriptableObject { }

    /// <summary>Timeline: a marker that emits its <see cref="asset"/> to the receivers of the track's bound object.</summary>
    public class SignalEmitter : Marker, INotification
    {
        public SignalAsset asset { get; set; }
        public bool retroactive { get; set; }
        public bool emitOnce { get; set; }
        PropertyName INotification.id { get { return new PropertyName(asset != null ? asset.name : ""); } }
    }

    public abstract class TrackAsset : PlayableAsset
    {
        readonly List<TimelineClip> clips = new List<TimelineClip>();
        internal readonly List<IMarker> markers = new List<IMarker>();

        public IEnumerable<TimelineClip> GetClips() { return clips; }

        /// <summary>Timeline: a new marker of type <typeparamref name="T"/> at <paramref name="time"/> on this track (the stub's T
        /// needs new()).</summary>
        public T CreateMarker<T>(double time) where T : ScriptableObject, IMarker, new()
        {
            var marker = ScriptableObject.CreateInstance<T>();
            marker.time = time;
            marker.Initialize(this);
            markers.Add(marker);
            return marker;
        }

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

    /// <summary>Timeline: the track of markers bound to the GameObject of the PlayableDirector that plays the timeline.</summary>
    public class MarkerTrack : TrackAsset { }

    /// <summary>Timeline: a timeline, a PlayableAsset that a PlayableDirector plays.</summary>
    public class TimelineAsset : PlayableAsset
    {
        readonly List<TrackAsset> tracks = new List<TrackAsset>();

        public MarkerTrack markerTrack { get; private set; }

        /// <summary>Timeline: a new track of type <typeparamref name="T"/> (the stub takes no parent: null only).</summary>
        public T CreateTrack<T>(TrackAsset parent, string trackName) where T : TrackAsset, new()
        {
            if (parent != null) throw new NotSupportedException("the stub makes root tracks only");
            var track = ScriptableObject.CreateInstance<T>();
            track.name = trackName ?? "";
            tracks.Add(track);
            return track;
        }

        /// <summary>Timeline: creates the marker track once; later calls do nothing.</summary>
        public void CreateMarkerTrack()
        {
            if (markerTrack == null) markerTrack = ScriptableObject.CreateInstance<MarkerTrack>();
        }

        /// <summary>Timeline (DurationMode.BasedOnClips): where the last clip or marker ends.</summary>
        public override double duration
        {
            get
            {
                double end = 0;
                foreach (var track in tracks) foreach (var clip in track.GetClips()) end = Math.Max(end, clip.end);
                foreach (var track in AllTracks()) foreach (var marker in track.markers) end = Math.Max(end, marker.time);
                return end;
            }
        }

        IEnumerable<TrackAsset> AllTracks()
        {
            if (markerTrack != null) yield return markerTrack;
            foreach (var track in tracks) yield return track;
        }

        public override Playable CreatePlayable(PlayableGraph graph, GameObject owner)
        {
            var playable = ScriptPlayable<TimelinePlayback>.Create(graph);
            var behaviour = playable.GetBehaviour();
            behaviour.Timeline = this;
            foreach (var track in tracks) behaviour.Mixers.Add(new KeyValuePair<TrackAsset, Playable>(track, track.CreatePlayable(graph, owner)));
            return playable;
        }

        // Stub only: the timeline's root playable, evaluated once a frame by the stub's PlayableDirector.
        sealed class TimelinePlayback : PlayableBehaviour
        {
            public TimelineAsset Timeline;
            public readonly List<KeyValuePair<TrackAsset, Playable>> Mixers = new List<KeyValuePair<TrackAsset, Playable>>();
            double lastTime = double.NaN;

            public override void ProcessFrame(Playable playable, FrameData info, object playerData)
            {
                var director = (PlayableDirector)playerData;
                double t = director.time;
                foreach (var kv in Mixers)
                {
                    var mixer = kv.Value.BehaviourForTests;
                    if (mixer != null) mixer.ProcessFrame(kv.Value, info, director.GetGenericBinding(kv.Key));
                }
                if (Timeline.markerTrack != null)
                    foreach (var marker in Timeline.markerTrack.markers)
                    {
                        var notification = marker as INotification;
                        if (notification != null && (double.IsNaN(lastTime) ? marker.time <= t : marker.time > lastTime && marker.time <= t))
                            director.PushNotificationForTests(playable, notification);
                    }
                lastTime = t;
            }

            public override void OnGraphStop(Playable playable)
            {
                foreach (var kv in Mixers)
                {
                    var mixer = kv.Value.BehaviourForTests;
                    if (mixer != null) mixer.OnGraphStop(kv.Value);
                }
            }
        }
    }

    [AttributeUsage(AttributeTargets.Class, AllowMultiple = true)]
    public class TrackClipTypeAttribute : Attribute { public readonly Type inspectedType; public TrackClipTypeAttribute(Type clipClass) { inspectedType = clipClass; } }

    [AttributeUsage(AttributeTargets.Class)]
    public class TrackBindingTypeAttribute : Attribute { public readonly Type type; public TrackBindingTypeAttribute(Type type) { this.type = type; } }

    [AttributeUsage(AttributeTargets.Class)]
    public class TrackColorAttribute : Attribute { public TrackColorAttribute(float r, float g, float b) { } }
}
