// A Timeline track of ShotStream shots, bound to the ShotStreamScreen that shows them. It cues each clip ahead of its
// start by a lead time measured from the service's latency, and can hold the PlayableDirector while a clip's frames
// are late.
using System;
using System.Collections.Generic;
using ShotStream.Core;
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
    /// <para>Cuts land where the timeline says: a cut clip that follows another shot clip is cued as a cut at a chunk
    /// (<c>Cue.at_chunk</c>, <see cref="ShotStreamClient.PlayShotCutAt"/>) of the previous clip's shot: <see cref="CutAtChunk"/>
    /// chunks, the fewest that cover the time from the previous clip's start to the cut clip's start (at least 1, at most the
    /// previous clip's chunks). It is cued as soon as the previous clip's shot has started on the server (cued earlier, while
    /// that shot is still queued, the cut would drop it), not a lead time before its clip: wherever the cue arrives in the
    /// previous shot, the server keeps generating up to that chunk and cuts there, so the cut does not depend on the
    /// service's speed. When the previous shot ends before the cut clip's start (it needs all its chunks), the cut is cued a
    /// lead time ahead as other clips are, still pinned to the previous shot's last chunk (so a late previous shot is not cut
    /// short). A cut clip with no shot clip before it, or after one that was skipped or could not be cued, is a plain cut
    /// (at the next chunk boundary), cued a lead time ahead once the shots of the clips before it are on screen: cued
    /// earlier it would cut them before they are seen. Clips are cued in clip order (a clip waits for the cut before it,
    /// which would otherwise drop it from the server's queue).</para>
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

        /// <summary>Where a cut clip starting <paramref name="secondsAfterPrevious"/> after the previous clip's start cuts the
        /// previous clip's shot in <paramref name="session"/>: the fewest chunks of that shot whose frames (the first chunk
        /// FramesFirstChunk frames, each later one FramesPerChunk, at the session's fps) cover that time, at least 1, at most
        /// <paramref name="previousChunks"/> (the previous shot's chunks; 0: the session's MaxChunksPerShot, or no limit when
        /// unknown). 0 when the session does not say its fps or chunk sizes.</summary>
        public static int CutAtChunk(double secondsAfterPrevious, SessionOpened session, int previousChunks)
        {
            int needed = ChunksToCover(secondsAfterPrevious, session);
            if (needed <= 0) return 0;
            int most = MostChunks(session, previousChunks);
            return most > 0 ? Math.Min(needed, most) : needed;
        }

        // The fewest chunks of a shot that cover `seconds` of it (at least 1); 0 when the session does not say.
        internal static int ChunksToCover(double seconds, SessionOpened session)
        {
            if (session == null || session.Fps == 0 || (session.FramesFirstChunk == 0 && session.FramesPerChunk == 0)) return 0;
            double first = session.FramesFirstChunk > 0 ? session.FramesFirstChunk : session.FramesPerChunk;
            double later = session.FramesPerChunk > 0 ? session.FramesPerChunk : session.FramesFirstChunk;
            double frames = Math.Max(0, seconds) * session.Fps;
            if (frames <= first + 1e-6) return 1;
            double more = Math.Ceiling((frames - first) / later - 1e-6);
            return more >= int.MaxValue - 1 ? int.MaxValue : 1 + (int)more;
        }

        // The previous shot's chunks: its clip's, else the session's most (0: unknown).
        internal static int MostChunks(SessionOpened session, int previousChunks)
        {
            int most = session != null ? (int)Math.Min(session.MaxChunksPerShot, int.MaxValue) : 0;
            if (previousChunks > 0) return most > 0 ? Math.Min(previousChunks, most) : previousChunks;
            return most;
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
        /// <summary>Once cued: the chunk of the previous clip's shot its cut was pinned to (Cue.at_chunk); 0 for a plain cut or
        /// a waiting shot.</summary>
        public int AtChunk;

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
            bool earlierWaiting = false; // an earlier clip is still to be cued: the later ones wait (cues go in clip order)
            ShotSlot previous = null;
            foreach (var slot in Slots)
            {
                if (!slot.Cued && !slot.Skipped)
                {
                    if (t >= slot.End) slot.Skipped = true;
                    else if (!earlierWaiting)
                    {
                        if (!slot.Clip.CutsCurrent(Track.PromptMap)) { if (t >= slot.Start - lead) Cue(slot, client, t, 0); }
                        else if (!PinnedCut(slot, previous))
                        {
                            // a plain cut waits until the shots before it are on screen: cued earlier it would cut them before they are seen
                            if (t >= slot.Start - lead && !earlierUnseen) Cue(slot, client, t, 0);
                        }
                        else if (previous.Playback.Started)
                        {
                            // pinned to a chunk of the previous shot, which is the server's shot in progress (or done) now
                            int needed = ShotStreamTrack.ChunksToCover(slot.Start - previous.Start, client.Session);
                            int most = ShotStreamTrack.MostChunks(client.Session, PlannedChunks(previous));
                            int at = ShotStreamTrack.CutAtChunk(slot.Start - previous.Start, client.Session, PlannedChunks(previous));
                            // it lands mid-shot: cue it now; the previous shot ends before the clip: a lead ahead once the
                            // shots before it are on screen, like a plain cut (cued earlier, it would follow the previous shot at once)
                            if (at <= 0) { if (t >= slot.Start - lead && !earlierUnseen) Cue(slot, client, t, 0); }
                            else if (most <= 0 || needed <= most) Cue(slot, client, t, at);
                            else if (t >= slot.Start - lead && !earlierUnseen) Cue(slot, client, t, at);
                        }
                    }
                }
                if (!slot.Cued && !slot.Skipped) earlierWaiting = true;
                var pb = slot.Playback;
                if (pb != null && !pb.Presented && !pb.IsDone) earlierUnseen = true;
                previous = slot;
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

        // Whether a cut clip's cut is pinned to a chunk of the previous clip's shot: that clip was cued and its shot did not fail.
        static bool PinnedCut(ShotSlot slot, ShotSlot previous)
        {
            return previous != null && previous.Cued && !previous.Skipped && previous.Playback != null && !previous.Playback.Failed;
        }

        // The chunks the previous clip's shot was cued with (0: the server's default).
        int PlannedChunks(ShotSlot slot)
        {
            try { return (int)Math.Min(slot.Clip.Resolve(Track.PromptMap).Chunks, int.MaxValue); }
            catch (Exception) { return 0; }
        }

        void Cue(ShotSlot slot, ShotStreamClient client, double t, int atChunk)
        {
            slot.CuedAt = t;
            slot.AtChunk = 0;
            try
            {
                ResolvedShot shot = slot.Clip.Resolve(Track.PromptMap);
                string[] tags = string.IsNullOrEmpty(shot.EventName) ? new string[0] : new[] { shot.EventName };
                if (shot.Cut && atChunk > 0)
                {
                    slot.Playback = client.PlayShotCutAt(shot.Prompt, atChunk, (int)shot.Chunks, tags);
                    slot.AtChunk = atChunk;
                }
                else slot.Playback = client.PlayShot(shot.Prompt, (int)shot.Chunks, shot.Cut, tags);
            }
            catch (Exception e)
            {
                Debug.LogWarning("ShotStreamTrack: clip '" + slot.Name + "' cannot be cued: " + e.Message);
            }
        }

        // The timeline jumped back: clips whose cue time is still ahead are cued again when it gets there. A cut pinned to
        // the previous clip's shot goes with that shot: cued again only when the previous clip is.
        void Rewind(double t, double lead)
        {
            bool previousReset = false;
            foreach (var slot in Slots)
            {
                bool reset = t < slot.Start - lead && (slot.AtChunk == 0 || previousReset);
                if (reset) { slot.CuedAt = double.NaN; slot.Playback = null; slot.Skipped = false; slot.AtChunk = 0; }
                previousReset = reset;
            }
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
