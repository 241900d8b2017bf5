// ShotStream playback jitter buffer: frames arrive in bursts (one chunk of several frames at a
// time) and are presented at a fixed rate (16 fps by default). Plain C# 7.2, no UnityEngine.
using System;

namespace ShotStream.Core
{
    public enum JitterState
    {
        /// <summary>Nothing presented yet: waiting for the start-up threshold.</summary>
        Starting = 0,
        /// <summary>Presenting one frame every 1/fps seconds.</summary>
        Playing = 1,
        /// <summary>Underrun: holding the last frame until the re-buffer threshold is met.</summary>
        Rebuffering = 2,
    }

    /// <summary>What a poll later than one frame period does (a stall: a long frame, a breakpoint, a load).
    /// A paused game clock is not a stall: the clock does not move, so nothing is due.</summary>
    public enum JitterCatchUp
    {
        /// <summary>Nothing is dropped (the default): the next frame in line is shown and the schedule restarts from it,
        /// so the picture falls behind the clock by the stall (counted in <see cref="JitterBuffer.Stalls"/> and
        /// <see cref="JitterBuffer.DelayedSeconds"/>). A game polling below the video's rate plays it at its own rate.</summary>
        Delay = 0,
        /// <summary>Stay on the clock: the frames whose slots passed during the stall are skipped (counted in
        /// <see cref="JitterBuffer.SkippedFrames"/>) and the frame due now is shown.</summary>
        Skip = 1,
    }

    /// <summary>The frame to show now: <see cref="FrameBytes"/> bytes at Buffer[Offset..]. The buffer is the jitter buffer's
    /// (a copy) or the pusher's (<see cref="JitterBuffer.PushShared"/>) and stays valid (unchanged) until the next TryGetFrame
    /// call; copy it out (e.g. upload it to a texture) before then.</summary>
    public struct JitterFrame
    {
        /// <summary>Holds the frame's bytes from <see cref="Offset"/> on.</summary>
        public byte[] Buffer;
        /// <summary>Where the frame starts in <see cref="Buffer"/>.</summary>
        public int Offset;
        /// <summary>Index of this frame in arrival order (0 = first frame ever pushed).</summary>
        public long FrameIndex;
        /// <summary>True when this frame was not returned by the previous call (upload needed).</summary>
        public bool IsNew;
        /// <summary>True when the buffer ran empty and the last frame is held (underrun).</summary>
        public bool IsHeld;
    }

    /// <summary>
    /// Fixed-rate playback queue with start-up buffering, underrun handling and a bounded capacity.
    /// Time is injected (seconds, any epoch, monotonic) so it is deterministic to test.
    /// <para>Schedule: playback (re)starts at time t0 with the oldest queued frame; queued frame k
    /// after that is due at t0 + k/fps exactly (computed from t0, never accumulated, so no drift).
    /// The clock is the caller's: feed it the game's time and a paused game pauses playback with
    /// nothing dropped. A caller that polls more than one frame period late (a stall) gets what
    /// <see cref="CatchUp"/> says: by default the next frame in line, the schedule restarting from it
    /// (<see cref="JitterCatchUp.Delay"/>: nothing dropped); or the frame due now, the missed ones
    /// skipped and counted (<see cref="JitterCatchUp.Skip"/>). When a frame is due and none is queued:
    /// underrun, the last frame is held, and playback restarts (new t0) once the re-buffer threshold is met.</para>
    /// <para>Bounded and lossless: a Push that does not fit is refused (Push returns how many frames it
    /// took), so the caller can hold back the chunk's ack and the server's credit window applies
    /// back-pressure; every generated frame is content, none is dropped to make room.</para>
    /// <para>Frames by reference: <see cref="PushShared"/> keeps a whole chunk's buffer (no copy) and hands it back through
    /// its release callback once none of its frames is queued or on screen; <see cref="Push"/> copies frames into buffers of
    /// its own, allocated when first needed (at most capacity + 1, nothing up front) and reused. TryGetFrame hands out
    /// references. No per-frame allocation once warm; <see cref="Reset"/> keeps the buffers for a new stream.</para>
    /// Not thread-safe.
    /// </summary>
    public sealed class JitterBuffer
    {
        // A record holds one buffer with frames queued or on screen: a pushed chunk's (released to its owner when its last
        // frame leaves) or one of the copies' (back to _spare). At most capacity + 1 are live (each holds a frame).
        readonly byte[][] _recBuffer;
        readonly Action<byte[]>[] _recRelease;  // null: a copy buffer of ours
        readonly int[] _recLive;                // its frames queued or on screen
        readonly int[] _freeRec;                // stack of free record indices
        int _freeRecCount;
        readonly byte[][] _spare;               // copy buffers not in use
        int _spareCount;
        readonly int[] _queueRec;               // ring of queued frames: record, offset, arrival index; oldest at _head
        readonly int[] _queueOffset;
        readonly long[] _queueIndex;
        int _head, _count;
        int _current = -1;            // record of the frame on screen, -1 before the first frame
        int _currentOffset;
        long _currentIndex = -1;
        long _lastReturnedIndex = -1;
        long _pushedTotal;
        double _t0;                   // time of the frame presented at schedule position 0
        long _scheduled;              // schedule positions consumed since t0 (frame at position _scheduled-1 is on screen)

        public int FrameBytes { get; private set; }
        public int Capacity { get; private set; }
        public double FramesPerSecond { get; private set; }
        /// <summary>Start (and re-start after an underrun) once this many frames are queued.</summary>
        public int StartFrames { get; private set; }

        public JitterState State { get; private set; }
        public int QueuedFrames { get { return _count; } }
        /// <summary>Underrun episodes: a frame was due and none was queued (a late chunk, or the story ran out of shots).</summary>
        public int Underruns { get; private set; }
        public long PresentedFrames { get; private set; }
        /// <summary>Frames skipped because the caller polled after their slot had passed (<see cref="JitterCatchUp.Skip"/> only).</summary>
        public long SkippedFrames { get; private set; }
        /// <summary>What a poll more than one frame period late does; Delay (nothing dropped) by default. Applies from the next poll.</summary>
        public JitterCatchUp CatchUp { get; set; }
        /// <summary>Polls that came more than one frame period late while playing, whatever the policy.</summary>
        public int Stalls { get; private set; }
        /// <summary>How far the picture fell behind the clock through stalls under <see cref="JitterCatchUp.Delay"/> (seconds).</summary>
        public double DelayedSeconds { get; private set; }
        /// <summary>Frames not accepted because the queue was full.</summary>
        public long RefusedFrames { get; private set; }

        public JitterBuffer(int frameBytes, int capacity, double framesPerSecond = 16.0, int startFrames = 1)
        {
            if (frameBytes < 1) throw new ArgumentOutOfRangeException("frameBytes");
            if (capacity < 1) throw new ArgumentOutOfRangeException("capacity");
            FrameBytes = frameBytes;
            Capacity = capacity;
            SetPlayback(framesPerSecond, startFrames);
            _recBuffer = new byte[capacity + 1][];
            _recRelease = new Action<byte[]>[capacity + 1];
            _recLive = new int[capacity + 1];
            _freeRec = new int[capacity + 1];
            for (int i = 0; i < _freeRec.Length; i++) _freeRec[i] = _freeRec.Length - 1 - i;
            _freeRecCount = _freeRec.Length;
            _spare = new byte[capacity + 1][];
            _queueRec = new int[capacity];
            _queueOffset = new int[capacity];
            _queueIndex = new long[capacity];
            State = JitterState.Starting;
        }

        void SetPlayback(double framesPerSecond, int startFrames)
        {
            if (!(framesPerSecond > 0) || double.IsInfinity(framesPerSecond)) throw new ArgumentOutOfRangeException("framesPerSecond");
            if (startFrames < 1 || startFrames > Capacity) throw new ArgumentOutOfRangeException("startFrames", "must be in [1, capacity]");
            FramesPerSecond = framesPerSecond;
            StartFrames = startFrames;
        }

        /// <summary>Copy <paramref name="frameCount"/> consecutive frames (FrameBytes each) from
        /// <paramref name="source"/>[offset..] into the queue (the source may be reused right after);
        /// <paramref name="nowSeconds"/> is the arrival time.</summary>
        /// <returns>Frames accepted: the first ones, as many as fit (the rest are counted in RefusedFrames).</returns>
        public int Push(byte[] source, int offset, int frameCount, double nowSeconds)
        {
            CheckSource(source, offset, frameCount);
            int accepted = 0;
            for (int f = 0; f < frameCount; f++)
            {
                if (_count == Capacity)
                {
                    RefusedFrames += frameCount - f;
                    break;
                }
                byte[] buf = _spareCount > 0 ? _spare[--_spareCount] : new byte[FrameBytes];
                Buffer.BlockCopy(source, offset + f * FrameBytes, buf, 0, FrameBytes);
                int rec = NewRecord(buf, null, 1);
                Enqueue(rec, 0);
                accepted++;
            }
            return accepted;
        }

        /// <summary>Queues <paramref name="frameCount"/> consecutive frames of <paramref name="buffer"/>[offset..] by reference
        /// (no copy). When it returns more than 0 the buffer is the jitter buffer's until <paramref name="release"/>(buffer) is
        /// called, once none of its frames is queued or on screen (or at <see cref="Reset"/>); do not change it meanwhile.
        /// When it returns 0 (full) the buffer stays the caller's and release is not called.</summary>
        /// <returns>Frames accepted: the first ones, as many as fit (the rest are counted in RefusedFrames).</returns>
        public int PushShared(byte[] buffer, int offset, int frameCount, double nowSeconds, Action<byte[]> release)
        {
            CheckSource(buffer, offset, frameCount);
            if (release == null) throw new ArgumentNullException("release");
            int accepted = Math.Min(frameCount, Capacity - _count);
            RefusedFrames += frameCount - accepted;
            if (accepted == 0) return 0;
            int rec = NewRecord(buffer, release, accepted);
            for (int f = 0; f < accepted; f++) Enqueue(rec, offset + f * FrameBytes);
            return accepted;
        }

        void CheckSource(byte[] source, int offset, int frameCount)
        {
            if (source == null) throw new ArgumentNullException("source");
            if (frameCount < 0 || offset < 0 || (long)offset + (long)frameCount * FrameBytes > source.Length)
                throw new ArgumentOutOfRangeException("frameCount", "source is too small for the frames");
        }

        int NewRecord(byte[] buffer, Action<byte[]> release, int frames)
        {
            int rec = _freeRec[--_freeRecCount];
            _recBuffer[rec] = buffer;
            _recRelease[rec] = release;
            _recLive[rec] = frames;
            return rec;
        }

        void Enqueue(int rec, int offset)
        {
            int tail = (_head + _count) % Capacity;
            _queueRec[tail] = rec;
            _queueOffset[tail] = offset;
            _queueIndex[tail] = _pushedTotal++;
            _count++;
        }

        // One frame of record `rec` is gone: the last one gives its buffer back.
        void Drop(int rec)
        {
            if (--_recLive[rec] > 0) return;
            byte[] buf = _recBuffer[rec];
            Action<byte[]> release = _recRelease[rec];
            _recBuffer[rec] = null;
            _recRelease[rec] = null;
            _freeRec[_freeRecCount++] = rec;
            if (release == null) _spare[_spareCount++] = buf;
            else release(buf);
        }

        /// <summary>Drops everything (queued frames and the one on screen, their shared buffers released) and starts a new
        /// stream at <paramref name="framesPerSecond"/>, playing once <paramref name="startFrames"/> are queued: frame
        /// indices and counters restart at 0; the copy buffers are kept (no allocation).</summary>
        public void Reset(double framesPerSecond, int startFrames)
        {
            SetPlayback(framesPerSecond, startFrames);
            while (_count > 0)
            {
                int rec = _queueRec[_head];
                _head = (_head + 1) % Capacity;
                _count--;
                Drop(rec);
            }
            if (_current >= 0) Drop(_current);
            _current = -1;
            _currentIndex = _lastReturnedIndex = -1;
            _head = 0;
            _pushedTotal = 0;
            Underruns = Stalls = 0;
            DelayedSeconds = 0;
            PresentedFrames = SkippedFrames = RefusedFrames = 0;
            State = JitterState.Starting;
        }

        /// <summary>The frame to show at <paramref name="nowSeconds"/> (non-decreasing between calls).</summary>
        /// <returns>false only while nothing has been presented yet (start-up buffering).</returns>
        public bool TryGetFrame(double nowSeconds, out JitterFrame frame)
        {
            if (State == JitterState.Starting || State == JitterState.Rebuffering)
            {
                if (_count >= StartFrames)
                {
                    State = JitterState.Playing;
                    _t0 = nowSeconds;
                    _scheduled = 0;
                }
            }
            if (State == JitterState.Playing)
            {
                // Schedule position due now: floor((now - t0) * fps), with a tolerance so that a
                // clock reading of exactly t0 + k/fps presents frame k despite rounding.
                long due = (long)Math.Floor((nowSeconds - _t0) * FramesPerSecond + 1e-9);
                if (due > _scheduled && _count > 0)
                {
                    // The slot of the next frame in line and at least the one after it have passed: a stall.
                    Stalls++;
                    if (CatchUp == JitterCatchUp.Delay)
                    {
                        // Restart the schedule so that the next frame in line is due now: nothing is skipped.
                        DelayedSeconds += nowSeconds - (_t0 + _scheduled / FramesPerSecond);
                        _t0 = nowSeconds - _scheduled / FramesPerSecond;
                        due = _scheduled;
                    }
                }
                while (_scheduled <= due)
                {
                    if (_count == 0)
                    {
                        Underruns++;
                        State = JitterState.Rebuffering;
                        break;
                    }
                    bool skipping = _scheduled < due && _count > 1;
                    int rec = _queueRec[_head];
                    int off = _queueOffset[_head];
                    long idx = _queueIndex[_head];
                    _head = (_head + 1) % Capacity;
                    _count--;
                    if (_current >= 0) Drop(_current);
                    _current = rec;
                    _currentOffset = off;
                    _currentIndex = idx;
                    _scheduled++;
                    if (skipping) SkippedFrames++;
                    else PresentedFrames++;
                }
            }
            if (_current < 0)
            {
                frame = default(JitterFrame);
                return false;
            }
            frame.Buffer = _recBuffer[_current];
            frame.Offset = _currentOffset;
            frame.FrameIndex = _currentIndex;
            frame.IsNew = _currentIndex != _lastReturnedIndex;
            frame.IsHeld = State != JitterState.Playing;
            _lastReturnedIndex = _currentIndex;
            return true;
        }
    }
}
