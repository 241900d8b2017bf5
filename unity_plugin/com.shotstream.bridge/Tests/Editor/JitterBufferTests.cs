// Edit Mode tests of ShotStream.Core.JitterBuffer: 16 fps playback from bursty chunks, on an injected clock.
using NUnit.Framework;
using ShotStream.Core;

namespace ShotStream.Tests
{
    [TestFixture]
    public sealed class JitterBufferTests
    {
        const double Fps = 16.0;
        const int FrameBytes = 2;

        // `count` frames whose bytes hold their arrival index (low byte, then high byte).
        static byte[] Frames(int first, int count)
        {
            var b = new byte[count * FrameBytes];
            for (int i = 0; i < count; i++) { b[i * FrameBytes] = (byte)(first + i); b[i * FrameBytes + 1] = (byte)((first + i) >> 8); }
            return b;
        }

        static long Shown(JitterBuffer jb, double now)
        {
            JitterFrame f;
            Assert.IsTrue(jb.TryGetFrame(now, out f), "a frame at t={0}", now);
            Assert.AreEqual(f.FrameIndex & 0xff, f.Buffer[0], "the buffer holds the frame it claims");
            return f.FrameIndex;
        }

        [Test]
        public void PresentsOneFrameEverySixteenthOfASecond()
        {
            var jb = new JitterBuffer(FrameBytes, 32, Fps, 1);
            jb.Push(Frames(0, 9), 0, 9, 0.0);  // a shot's first chunk arrives at once
            for (int k = 0; k < 9; k++)
            {
                Assert.AreEqual(k, Shown(jb, 5.0 + k / Fps), "frame due at t0 + {0}/16", k);
                Assert.AreEqual(k, Shown(jb, 5.0 + (k + 0.9) / Fps), "still frame {0} just before the next is due", k);
            }
            Assert.AreEqual(0L, jb.SkippedFrames);
            Assert.AreEqual(9L, jb.PresentedFrames);
        }

        [Test]
        public void WaitsForTheStartThreshold()
        {
            var jb = new JitterBuffer(FrameBytes, 32, Fps, 4);
            JitterFrame f;
            jb.Push(Frames(0, 3), 0, 3, 0.0);
            Assert.IsFalse(jb.TryGetFrame(1.0, out f), "3 of 4 frames: still buffering");
            Assert.AreEqual(JitterState.Starting, jb.State);
            jb.Push(Frames(3, 1), 0, 1, 1.0);
            Assert.AreEqual(0L, Shown(jb, 1.0));
            Assert.AreEqual(JitterState.Playing, jb.State);
        }

        [Test]
        public void UnderrunHoldsTheLastFrameThenResumesWithoutLoss()
        {
            var jb = new JitterBuffer(FrameBytes, 32, Fps, 2);
            jb.Push(Frames(0, 2), 0, 2, 0.0);
            Assert.AreEqual(0L, Shown(jb, 0.0));
            Assert.AreEqual(1L, Shown(jb, 1 / Fps));
            JitterFrame f;
            Assert.IsTrue(jb.TryGetFrame(2 / Fps, out f));
            Assert.AreEqual(1L, f.FrameIndex, "holds the last frame");
            Assert.IsTrue(f.IsHeld);
            Assert.IsFalse(f.IsNew, "nothing new to upload");
            Assert.AreEqual(1, jb.Underruns);
            Assert.AreEqual(JitterState.Rebuffering, jb.State);
            jb.Push(Frames(2, 2), 0, 2, 3.0);  // the next chunk, late
            Assert.AreEqual(2L, Shown(jb, 3.0), "resumes with the next frame");
            Assert.AreEqual(3L, Shown(jb, 3.0 + 1 / Fps), "on a schedule restarted at the recovery");
        }

        [Test]
        public void SkipPolicyJumpsToTheFrameDueNow()
        {
            var jb = new JitterBuffer(FrameBytes, 32, Fps, 1);
            jb.CatchUp = JitterCatchUp.Skip;
            jb.Push(Frames(0, 8), 0, 8, 0.0);
            Assert.AreEqual(0L, Shown(jb, 0.0));
            Assert.AreEqual(5L, Shown(jb, 5 / Fps), "a stalled caller sees the frame of the clock, not the next in line");
            Assert.AreEqual(4L, jb.SkippedFrames);
            Assert.AreEqual(1, jb.Stalls);
        }

        [Test]
        public void DelayPolicyIsTheDefaultAndDropsNothingAfterAStall()
        {
            var jb = new JitterBuffer(FrameBytes, 32, Fps, 1);
            Assert.AreEqual(JitterCatchUp.Delay, jb.CatchUp);
            jb.Push(Frames(0, 8), 0, 8, 0.0);
            Assert.AreEqual(0L, Shown(jb, 0.0));
            Assert.AreEqual(1L, Shown(jb, 1 / Fps));
            Assert.AreEqual(2L, Shown(jb, 3.0), "a 3 s stall: the next frame in line, not the one of the clock");
            Assert.AreEqual(1, jb.Stalls);
            Assert.AreEqual(3.0 - 2 / Fps, jb.DelayedSeconds, 1e-9, "frame 2 was due at 2/16 s");
            for (int k = 3; k < 8; k++) Assert.AreEqual((long)k, Shown(jb, 3.0 + (k - 2) / Fps), "the schedule restarts at the stall's end");
            Assert.AreEqual(0L, jb.SkippedFrames);
            Assert.AreEqual(8L, jb.PresentedFrames);
        }

        [Test]
        public void FrozenClockPausesWithAFullBuffer()
        {
            // The game's clock stops (paused) with the buffer full: polls at the same time show the same frame; once the
            // clock moves again every frame follows, once, in order, at 1/16 s each.
            const int capacity = 36;
            var jb = new JitterBuffer(FrameBytes, capacity, Fps, 4);
            Assert.AreEqual(capacity, jb.Push(Frames(0, capacity), 0, capacity, 0.0));
            var shown = new System.Collections.Generic.List<long>();
            double clock = 10.0;
            JitterFrame f;
            for (int tick = 0; tick < 600; tick++)  // 10 s of 60 Hz polls; the clock is frozen for ticks 60..359 (5 s)
            {
                if (tick < 60 || tick >= 360) clock += 1 / 60.0;
                Assert.IsTrue(jb.TryGetFrame(clock, out f));
                if (f.IsNew) shown.Add(f.FrameIndex);
            }
            Assert.AreEqual(capacity, shown.Count);
            for (int k = 0; k < capacity; k++) Assert.AreEqual((long)k, shown[k], "frame {0} shown once, in order", k);
            Assert.AreEqual(0L, jb.SkippedFrames);
            Assert.AreEqual(0, jb.Stalls, "a frozen clock is no stall");
        }

        [Test]
        public void NoDriftOverAMinute()
        {
            var jb = new JitterBuffer(FrameBytes, 64, Fps, 1);
            int pushed = 0;
            for (int k = 0; k < 16 * 60; k++)
            {
                if (jb.QueuedFrames == 0) { jb.Push(Frames(pushed, 12), 0, 12, k / Fps); pushed += 12; }
                Assert.AreEqual(k, Shown(jb, 100.0 + k / Fps), "frame {0}", k);
            }
            Assert.AreEqual(0L, jb.SkippedFrames);
            Assert.AreEqual(0, jb.Underruns);
        }

        [Test]
        public void SharedChunksAreKeptByReferenceAndReleasedOnceOffScreen()
        {
            var jb = new JitterBuffer(FrameBytes, 8, Fps, 1);
            var released = new System.Collections.Generic.List<byte[]>();
            byte[] a = Frames(0, 2), b = Frames(2, 2);
            Assert.AreEqual(2, jb.PushShared(a, 0, 2, 0.0, released.Add));
            Assert.AreEqual(2, jb.PushShared(b, 0, 2, 0.0, released.Add));
            JitterFrame f;
            Assert.IsTrue(jb.TryGetFrame(0.0, out f));
            Assert.AreSame(a, f.Buffer, "no copy");
            Assert.AreEqual(0, f.Offset);
            Assert.IsTrue(jb.TryGetFrame(1 / Fps, out f));
            Assert.AreEqual(FrameBytes, f.Offset, "the chunk's second frame");
            Assert.AreEqual(0, released.Count, "a's last frame is on screen");
            Assert.IsTrue(jb.TryGetFrame(2 / Fps, out f));
            Assert.AreEqual(1, released.Count, "a is handed back once its frames have left the screen");
            Assert.AreSame(a, released[0]);
            jb.Reset(Fps, 1);
            Assert.AreEqual(2, released.Count, "Reset hands back b");
        }

        [Test]
        public void FullBufferRefusesWhatDoesNotFit()
        {
            var jb = new JitterBuffer(FrameBytes, 4, Fps, 1);
            Assert.AreEqual(4, jb.Push(Frames(0, 6), 0, 6, 0.0), "takes what fits: the caller keeps the chunk unacked");
            Assert.AreEqual(2L, jb.RefusedFrames);
            Assert.AreEqual(0L, Shown(jb, 0.0));
        }

        [Test]
        public void ResetStartsANewStreamInTheSameBuffers()
        {
            var jb = new JitterBuffer(FrameBytes, 4, Fps, 1);
            jb.Push(Frames(0, 4), 0, 4, 0.0);
            JitterFrame before;
            Assert.IsTrue(jb.TryGetFrame(0.0, out before));
            jb.Reset(8.0, 2);
            Assert.AreEqual(JitterState.Starting, jb.State);
            Assert.AreEqual(0, jb.QueuedFrames, "the old stream's frames are dropped");
            jb.Push(Frames(0, 2), 0, 2, 1.0);
            Assert.AreEqual(0L, Shown(jb, 1.0), "frame indices start over");
            Assert.AreEqual(1L, Shown(jb, 1.0 + 1 / 8.0), "at the new rate");
            Assert.AreEqual(0L, jb.RefusedFrames);
        }
    }
}
