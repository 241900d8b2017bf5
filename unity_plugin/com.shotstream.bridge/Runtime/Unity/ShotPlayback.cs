// What the player sees: on-screen shot and frame events, and ShotPlayback, a shot that can be awaited (`await`) or
// waited for in a coroutine (`yield return`) until it has ended on screen.
using System;
using System.Runtime.CompilerServices;
using System.Threading.Tasks;
using UnityEngine;
using UnityEngine.Events;

namespace ShotStream.Unity
{
    /// <summary>A shot as the screen showed it.</summary>
    public struct ShotOnScreen
    {
        /// <summary>The cue's event id ("unity-N" for the client's cues).</summary>
        public string EventId;
        /// <summary>The shot's index in the session's story.</summary>
        public uint ShotIndex;
        /// <summary>Screen frame index (arrival order) of the shot's first frame shown.</summary>
        public long FirstFrame;
        /// <summary>Frames of the shot shown so far (all of them once it has ended, but for skipped ones).</summary>
        public int FramesShown;
        /// <summary>The screen's video clock when the event was raised (<see cref="ShotStreamScreen.PlaybackTime"/>).</summary>
        public double PlaybackTime;
    }

    /// <summary>A frame that has just been put on screen.</summary>
    public struct PresentedFrame
    {
        /// <summary>Screen frame index (arrival order since the session opened).</summary>
        public long FrameIndex;
        /// <summary>The cue it belongs to ("" for frames pushed without one).</summary>
        public string EventId;
        public uint ShotIndex;
        /// <summary>0 for the shot's first frame shown.</summary>
        public int FrameInShot;
        /// <summary>The screen's video clock.</summary>
        public double PlaybackTime;
    }

    [Serializable] public sealed class ShotOnScreenEvent : UnityEvent<ShotOnScreen> { }
    [Serializable] public sealed class PresentedFrameEvent : UnityEvent<PresentedFrame> { }

    /// <summary>
    /// One cued shot, until it has ended on screen (its last frame shown for its full frame time): returned by
    /// <see cref="ShotStreamClient.PlayShot"/> and <see cref="ShotStreamDirector.PlayShot"/>. Wait for it either way:
    /// <code>yield return client.PlayShot("the gate opens", 2);</code> in a coroutine (a CustomYieldInstruction), or
    /// <code>ShotOnScreen s = await client.PlayShot("the gate opens", 2);</code> in an async method (it has GetAwaiter).
    /// It fails (await throws <see cref="ShotNotPlayedException"/>; a coroutine resumes with <see cref="Failed"/> set)
    /// when the server rejects the cue, a later cut drops it before it starts, the session ends or the client closes.
    /// Without an active screen it completes when the server reports the shot finished.
    /// </summary>
    public sealed class ShotPlayback : CustomYieldInstruction
    {
        readonly TaskCompletionSource<ShotOnScreen> tcs = new TaskCompletionSource<ShotOnScreen>(TaskCreationOptions.RunContinuationsAsynchronously);

        internal ShotPlayback(string eventId, bool cut, long order)
        {
            EventId = eventId;
            Cut = cut;
            Order = order;
        }

        public string EventId { get; private set; }
        /// <summary>True when the cue cuts the current shot.</summary>
        public bool Cut { get; private set; }
        internal long Order { get; private set; }
        /// <summary>The server started the shot.</summary>
        public bool Started { get; internal set; }
        /// <summary>The shot's first frame is on screen.</summary>
        public bool Presented { get; internal set; }
        /// <summary>Ended on screen, or failed.</summary>
        public bool IsDone { get { return tcs.Task.IsCompleted; } }
        public bool Failed { get { return tcs.Task.IsFaulted; } }
        /// <summary>Why it failed (null otherwise).</summary>
        public string Error { get; private set; }
        /// <summary>The shot as shown (valid once done and not failed).</summary>
        public ShotOnScreen Result { get; private set; }
        /// <summary>Completes when the shot has ended on screen; faults with <see cref="ShotNotPlayedException"/>.</summary>
        public Task<ShotOnScreen> Task { get { return tcs.Task; } }
        public override bool keepWaiting { get { return !IsDone; } }
        public TaskAwaiter<ShotOnScreen> GetAwaiter() { return tcs.Task.GetAwaiter(); }

        internal void Complete(ShotOnScreen shot)
        {
            if (IsDone) return;
            Result = shot;
            tcs.TrySetResult(shot);
        }

        internal void Fail(string why)
        {
            if (IsDone) return;
            Error = why;
            tcs.TrySetException(new ShotNotPlayedException(EventId, why));
        }
    }

    /// <summary>A <see cref="ShotPlayback"/> that did not play to its end on screen.</summary>
    public sealed class ShotNotPlayedException : Exception
    {
        public readonly string EventId;
        public ShotNotPlayedException(string eventId, string why) : base("shot " + eventId + " did not play: " + why) { EventId = eventId; }
    }
}
