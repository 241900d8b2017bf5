// A Timeline track of ShotStream shots, bound to the ShotStreamScreen that shows them. It cues each clip ahead of its
// start by a lead time measured from the service's latency, and can hold the PlayableDirector while a clip's frames
// are late.
using System;
using System.Collections.Generic;
using ShotStream.Unity;
using UnityEngine;
using UnityEngine.Playables;
using UnityEngine.Timeline;

namespace ShotStream.Timeline
{
    /// <summary>
    /// Cutscene authoring: shot clips (<see cref="ShotStreamShotClip"/>: a game event of <see cref="PromptMap"/> with
    /// parameters, or a prompt; chunks; cut or wait) on a track bound to a <see cref="ShotStreamScreen"/> whose
    /// <see cref="ShotStreamClient"/> cues them (the client that has it as its Screen).
    /// <para>Lead time: a shot takes the service's latency (cue sent → first chunk) to reach the screen, so each clip is cued
    /// <see cref="LeadSeconds"/> before its start: the longest of the client's last 8 cue latencies plus
    /// <see cref="LeadMarginSeconds"/>, or <see cref="DefaultLeadSeconds"/> before any was measured.</para>
    /// <para>Hold When Late: when the timeline reaches a clip whose shot has no frame on screen yet (the service is slower than
    /// the lead, or a waiting shot is queued behind a long one), the director's graph is held at speed 0 until the first
    /// frame is shown; and when it is about to leave a clip (within the director's last time step of its end) whose shot
    /// is still on screen (longer than the clip, or late mid-shot), it is held until the shot has ended on screen. Each
    /// hold lasts at most <see cref="MaxHoldSeconds"/> (real time). So whatever else the timeline drives (animation, audio,
    /// activation, signals at or after a clip's end) stays in step with the video.</para>
    /// <para>A cut clip is cued only once the shots of the clips before it are on screen: cued earlier it would cut them
    /// before they are seen.</para>
    /// <para>In play mode, jumping back before a clip's cue time cues it again when the timeline gets there; jumping past a
    /// clip skips it. In edit mode the client plays nothing; with <see cref="PreviewWhileScrubbing"/>, moving the playhead
    /// into a clip cues its shot (as a cut) on the editor preview window's session (<see cref="ShotStreamEditorPreview"/>),
    /// once per entry into the clip.</para>
    /// </summary>
    [Serializable]
    [TrackColor(0.16f, 0.55f, 0.85f)]
    [TrackClipType(typeof(ShotStreamShotClip))]
    [TrackBindingType(typeof(ShotStreamScreen))]
    public sealed class ShotStreamTrack : TrackAsset
    {
        [Tooltip("Game events of Game Event clips")]
        [SerializeField] ShotPromptMap promptMap = null;
        [Tooltip("Seconds added to the measured latency when cueing a clip ahead of its start")]
        [SerializeField] float leadMarginSeconds = 0.5f;
        [Tooltip("Lead time before any cue latency was measured")]
        [SerializeField] float defaultLeadSeconds = 3f;
        [Tooltip("Hold the director while a clip's shot has no frame on screen yet, and at a clip's end until its shot has ended on screen")]
        [SerializeField] bool holdWhenLate = true;
        [Tooltip("Longest hold, in real seconds; then the timeline plays on")]
        [SerializeField] float maxHoldSeconds = 10f;
        [Tooltip("In edit mode, scrubbing into a clip cues its shot on the ShotStream Preview window's session (when open and connected)")]
        [SerializeField] bool previewWhileScrubbing = true;

        public ShotPromptMap PromptMap { get { return promptMap; } set { promptMap = value; } }
        public float LeadMarginSeconds { get { return leadMarginSeconds; } set { leadMarginSeconds = Math.Max(0f, value); } }
        public float DefaultLeadSeconds { get { return defaultLeadSeconds; } set { defaultLeadSeconds = Math.Max(0f, value); } }
        public bool HoldWhenLate { get { return holdWhenLate; } set { holdWhenLate = value; } }
        public float MaxHoldSeconds { get { return maxHoldSeconds; } set { maxHoldSeconds = Math.Max(0f, value); } }
        public bool PreviewWhileScrubbing { get { return previewWhileScrubbing; } set { previewWhileScrubbing = value; } }

        /// <summary>How long before a clip's start it is cued with <paramref name="client"/>: its recent cue latency (the longest
        /// of the last 8) plus the margin, or the default lead before any was measured.</summary>
        public double LeadSeconds(ShotStreamClient client)
        {
            float ms = client != null ? client.RecentMaxCueLatencyMs : -1f;
            return ms >= 0 ? ms / 1000.0 + leadMarginSeconds : defaultLeadSeconds;
        }

        public override Playable CreateTrackMixer(PlayableGraph graph, GameObject go, int inputCount)
        {
            var mixer = ScriptPlayable<ShotStreamTrackMixer>.Create(graph, inputCount);
            var behaviour = mixer.GetBehaviour();
            behaviour.Track = this;
            foreach (var clip in GetClips())
            {
                var asset = clip.asset as ShotStreamShotClip;
                if (asset != null) behaviour.Slots.Add(new ShotSlot(clip.displayName, clip.start, clip.end, asset));
            }
            behaviour.Slots.Sort((a, b) => a.Start.CompareTo(b.Start));
            return mixer;
        }
    }

    /// <summary>One clip as the mixer follows it.</summary>
    public sealed class ShotSlot
    {
        public readonly string Name;
        public readonly double Start, End;
        public readonly ShotStreamShotClip Clip;
        /// <summary>The timeline time it was cued at (NaN: not cued).</summary>
        public double CuedAt = double.NaN;
        /// <summary>Its shot, once cued (null when it could not be).</summary>
        public ShotPlayback Playback;
        /// <summary>The timeline went past it without cueing it (a jump).</summary>
        public bool Skipped;
        /// <summary>The director was held for it until Max Hold Seconds ran out: it is not held for again.</summary>
        public bool HoldTimedOut;

        public ShotSlot(string name, double start, double end, ShotStreamShotClip clip)
        {
            Name = name;
            Start = start;
            End = end;
            Clip = clip;
        }

        public bool Cued { get { return !double.IsNaN(CuedAt); } }
    }

    /// <summary>The track's mixer: cues clips ahead of time and holds the director when frames are late.</summary>
    public sealed class ShotStreamTrackMixer : PlayableBehaviour
    {
        public ShotStreamTrack Track;
        public readonly List<ShotSlot> Slots = new List<ShotSlot>();
        /// <summary>True while the mixer holds the director (its graph's root at speed 0).</summary>
        public bool Holding { get; private set; }
        /// <summary>Times a hold ended because <see cref="ShotStreamTrack.MaxHoldSeconds"/> ran out.</summary>
        public int HoldTimeouts { get; private set; }

        PlayableDirector held;
        double holdStarted, speedBeforeHold;
        double lastTime = double.NaN;
        double lastStep;  // the director's last time step while not held: how far ahead of a clip's end to hold
        bool warnedNoClient;

        public override void ProcessFrame(Playable playable, FrameData info, object playerData)
        {
            if (Track == null) return;
            if (!Application.isPlaying)
            {
                PreviewScrub(playable);
                return;
            }
            var screen = playerData as ShotStreamScreen;
            if (screen == null) return;
            var client = screen.Client;
            if (client == null)
            {
                if (!warnedNoClient) Debug.LogWarning("ShotStreamTrack: the screen '" + screen.name + "' has no ShotStreamClient feeding it (set a client's Screen)");
                warnedNoClient = true;
                return;
            }
            var director = playable.GetGraph().GetResolver() as PlayableDirector;
            double t = director != null ? director.time : playable.GetTime();
            double lead = Track.LeadSeconds(client);
            if (!double.IsNaN(lastTime) && t < lastTime) Rewind(t, lead);
            else if (!double.IsNaN(lastTime) && t > lastTime) lastStep = t - lastTime;
            lastTime = t;
            bool earlierUnseen = false;  // an earlier clip's shot is cued and not on screen yet
            foreach (var slot in Slots)
            {
                if (!slot.Cued && !slot.Skipped)
                {
                    if (t >= slot.End) slot.Skipped = true;
                    // a cut waits until the shots before it are on screen: cued earlier it would cut them before they are seen
                    else if (t >= slot.Start - lead && !(earlierUnseen && slot.Clip.CutsCurrent(Track.PromptMap))) Cue(slot, client, t);
                }
                var pb = slot.Playback;
                if (pb != null && !pb.Presented && !pb.IsDone) earlierUnseen = true;
            }
            if (director != null && Track.HoldWhenLate) Hold(director, t);
        }

        /// <summary>Edit mode: the clip the playhead is in, last time its shot was previewed (null: none).</summary>
        public ShotSlot Previewed { get; private set; }

        // Edit mode: a clip entered by the playhead has its shot cued, as a cut, on the editor preview's session.
        void PreviewScrub(Playable playable)
        {
            var director = playable.GetGraph().GetResolver() as PlayableDirector;
            double t = director != null ? director.time : playable.GetTime();
            ShotSlot inside = null;
            foreach (var slot in Slots) if (t >= slot.Start && t < slot.End) inside = slot;
            if (inside == Previewed) return;
            Previewed = inside;
            if (inside == null || !Track.PreviewWhileScrubbing || !ShotStreamEditorPreview.Available) return;
            try
            {
                ResolvedShot shot = inside.Clip.Resolve(Track.PromptMap);
                ShotStreamEditorPreview.Cue(shot.Prompt, (int)shot.Chunks, true);
            }
            catch (Exception e)
            {
                Debug.LogWarning("ShotStreamTrack: clip '" + inside.Name + "' cannot be previewed: " + e.Message);
            }
        }

        void Cue(ShotSlot slot, ShotStreamClient client, double t)
        {
            slot.CuedAt = t;
            try
            {
                ResolvedShot shot = slot.Clip.Resolve(Track.PromptMap);
                slot.Playback = string.IsNullOrEmpty(shot.EventName)
                    ? client.PlayShot(shot.Prompt, (int)shot.Chunks, shot.Cut)
                    : client.PlayShot(shot.Prompt, (int)shot.Chunks, shot.Cut, shot.EventName);
            }
            catch (Exception e)
            {
                Debug.LogWarning("ShotStreamTrack: clip '" + slot.Name + "' cannot be cued: " + e.Message);
            }
        }

        // The timeline jumped back: clips whose cue time is still ahead are cued again when it gets there.
        void Rewind(double t, double lead)
        {
            foreach (var slot in Slots)
                if (t < slot.Start - lead) { slot.CuedAt = double.NaN; slot.Playback = null; slot.Skipped = false; }
        }

        void Hold(PlayableDirector director, double t)
        {
            ShotSlot late = null;
            foreach (var slot in Slots)
            {
                var pb = slot.Playback;
                if (pb == null || slot.HoldTimedOut || pb.IsDone) continue;
                // its first frame is late: the timeline is in the clip and none of the shot is on screen yet
                if (t >= slot.Start && t < slot.End && !pb.Presented) { late = slot; break; }
                // it runs over: the next step would take the timeline out of the clip while the shot is still on screen
                if (pb.Presented && t >= slot.End - lastStep && t < slot.End + lastStep) { late = slot; break; }
            }
            double now = Time.realtimeSinceStartupAsDouble;
            if (late != null && !Holding)
            {
                held = director;
                holdStarted = now;
                var root = director.playableGraph.GetRootPlayable(0);
                speedBeforeHold = root.GetSpeed();
                root.SetSpeed(0);
                Holding = true;
            }
            else if (Holding && (late == null || now - holdStarted > Track.MaxHoldSeconds))
            {
                if (late != null)
                {
                    late.HoldTimedOut = true;
                    HoldTimeouts++;
                    Debug.LogWarning("ShotStreamTrack: clip '" + late.Name + "' " + (late.Playback.Presented ? "has not ended on screen" : "still has no frame on screen")
                                     + " after " + Track.MaxHoldSeconds + " s: playing on");
                }
                Release();
            }
        }

        void Release()
        {
            if (!Holding) return;
            held.playableGraph.GetRootPlayable(0).SetSpeed(speedBeforeHold > 0 ? speedBeforeHold : 1);
            held = null;
            Holding = false;
        }

        public override void OnGraphStop(Playable playable) { Release(); }
    }
}
