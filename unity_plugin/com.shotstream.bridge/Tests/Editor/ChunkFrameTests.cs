// Edit Mode tests of the gateway's binary chunk frames: "SSC1", u32 LE header length, FrameChunk JSON, pixels.
using System;
using System.Text;
using NUnit.Framework;
using ShotStream.Core;

namespace ShotStream.Tests
{
    [TestFixture]
    public sealed class ChunkFrameTests
    {
        // A frame as the gateway builds it: 2 RGBA frames of 5x3 pixels, byte i = (7i + 3) mod 256.
        static byte[] GatewayFrame(int pixelBytes)
        {
            byte[] header = Encoding.UTF8.GetBytes("{\"chunkSeq\": \"3\", \"eventId\": \"e\u00e9\", \"shotIndex\": 1, \"storyFrame\": \"9\", "
                + "\"numFrames\": 2, \"width\": 5, \"height\": 3, \"frameFormat\": \"FRAME_FORMAT_RGBA8\", \"timing\": {\"denoiseMs\": 2.5}}");
            var frame = new byte[8 + header.Length + pixelBytes];
            Encoding.ASCII.GetBytes("SSC1").CopyTo(frame, 0);
            BitConverter.GetBytes((uint)header.Length).CopyTo(frame, 4);  // little-endian on every Unity platform
            header.CopyTo(frame, 8);
            for (int i = 0; i < pixelBytes; i++) frame[8 + header.Length + i] = (byte)((i * 7 + 3) % 256);
            return frame;
        }

        const int Pixels = 2 * 3 * 5 * 4;

        [Test]
        public void DecodesWithoutCopyingThePixels()
        {
            byte[] frame = GatewayFrame(Pixels);
            Assert.IsTrue(ChunkFrame.HasKnownMagic(frame, 0, frame.Length));
            FrameChunk c = ChunkFrame.Decode(frame, 0, frame.Length);
            Assert.AreEqual(3UL, c.ChunkSeq);
            Assert.AreEqual("e\u00e9", c.EventId);
            Assert.AreEqual(9UL, c.StoryFrame);
            Assert.AreEqual(FrameFormat.Rgba8, c.FrameFormat);
            Assert.AreEqual(2.5, c.Timing.DenoiseMs);
            Assert.AreSame(frame, c.Pixels.Array, "pixels point into the receive buffer");
            Assert.AreEqual(Pixels, c.Pixels.Count);
            Assert.AreEqual(frame.Length - Pixels, c.Pixels.Offset);
            Assert.AreEqual(3, frame[c.Pixels.Offset]);
            Assert.AreEqual((7 * (Pixels - 1) + 3) % 256, frame[c.Pixels.Offset + Pixels - 1]);
        }

        [Test]
        public void DecodesAFrameAtTheStartOfALargerReceiveBuffer()
        {
            byte[] frame = GatewayFrame(Pixels);
            var buffer = new byte[frame.Length + 100];  // the connection's reusable buffer is larger than the message
            frame.CopyTo(buffer, 0);
            FrameChunk c = ChunkFrame.Decode(buffer, 0, frame.Length);
            Assert.AreEqual(Pixels, c.Pixels.Count, "the bytes after the message are not pixels");
            Assert.AreSame(buffer, c.Pixels.Array);
        }

        [Test]
        public void RejectsFramesWhosePixelsDoNotMatchTheHeader()
        {
            byte[] shortFrame = GatewayFrame(Pixels - 1), longFrame = GatewayFrame(Pixels + 1);
            StringAssert.Contains("expected numFrames*height*width*channels", Assert.Throws<FormatException>(() => ChunkFrame.Decode(shortFrame, 0, shortFrame.Length)).Message);
            Assert.Throws<FormatException>(() => ChunkFrame.Decode(longFrame, 0, longFrame.Length));
            byte[] frame = GatewayFrame(Pixels);
            Assert.Throws<FormatException>(() => ChunkFrame.Decode(frame, 0, 7), "shorter than the header");
            frame[7] = 0x7f;
            Assert.Throws<FormatException>(() => ChunkFrame.Decode(frame, 0, frame.Length), "header length past the end");
        }

        [Test]
        public void UnknownMagicIsReservedForLaterVersions()
        {
            byte[] frame = GatewayFrame(Pixels);
            frame[3] = (byte)'2';
            Assert.IsFalse(ChunkFrame.HasKnownMagic(frame, 0, frame.Length), "a client skips such frames");
            Assert.Throws<FormatException>(() => ChunkFrame.Decode(frame, 0, frame.Length));
        }
    }
}
