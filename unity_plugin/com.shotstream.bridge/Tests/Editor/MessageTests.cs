// Edit Mode tests of the shotstream.v1 messages as the WebSocket gateway speaks them (proto3 JSON). The
// server frames below are in the form the gateway writes (json_format.MessageToJson: camelCase, enum names,
// uint64 as strings, defaults omitted); the client frames are what the gateway parses. The repository's
// golden tests check the same code against messages the Python service itself writes.
using NUnit.Framework;
using ShotStream.Core;

namespace ShotStream.Tests
{
    [TestFixture]
    public sealed class MessageTests
    {
        [Test]
        public void DecodesSessionOpenedWithARingLayout()
        {
            var m = ServerMessage.FromJson("{\"opened\": {\"sessionId\": \"s-2\", \"protocolVersion\": 1, \"width\": 832, \"height\": 480, \"fps\": 16, "
                + "\"framesFirstChunk\": 9, \"framesPerChunk\": 12, \"maxChunksPerShot\": 7, \"frameFormat\": \"FRAME_FORMAT_RGBA8\", "
                + "\"transport\": \"TRANSPORT_SHARED_MEMORY\", \"maxChunksInFlight\": 3, \"ring\": {\"path\": \"/dev/shm/shotstream-s-2.ring\", "
                + "\"layoutVersion\": 1, \"slotCount\": 3, \"slotBytes\": \"19169344\", \"headerBytes\": 4096, \"slotHeaderBytes\": 64}, \"model\": \"tiny\"}}");
            Assert.AreEqual(ServerKind.Opened, m.Kind);
            var o = m.Opened;
            Assert.AreEqual("s-2", o.SessionId);
            Assert.AreEqual(832u, o.Width);
            Assert.AreEqual(480u, o.Height);
            Assert.AreEqual(16u, o.Fps);
            Assert.AreEqual(FrameFormat.Rgba8, o.FrameFormat);
            Assert.AreEqual(Transport.SharedMemory, o.Transport);
            Assert.AreEqual("/dev/shm/shotstream-s-2.ring", o.Ring.Path);
            Assert.AreEqual(19169344UL, o.Ring.SlotBytes);
            Assert.IsFalse(o.RandomWeights, "an omitted bool is false");
        }

        [Test]
        public void DecodesChunkRefsWithUInt64AboveDoublePrecision()
        {
            var c = ServerMessage.FromJson("{\"chunk\": {\"chunkSeq\": \"18446744073709551615\", \"eventId\": \"boss\", \"storyFrame\": \"9007199254740993\", "
                + "\"numFrames\": 12, \"width\": 832, \"height\": 480, \"frameFormat\": \"FRAME_FORMAT_RGB8\", \"lastInShot\": true, "
                + "\"ringSlot\": {\"slot\": 2, \"sequence\": \"7\", \"offset\": \"4160\", \"length\": \"14376960\"}, \"timing\": {\"denoiseMs\": 20.25}}}").Chunk;
            Assert.AreEqual(ulong.MaxValue, c.ChunkSeq);
            Assert.AreEqual(9007199254740993UL, c.StoryFrame, "2^53 + 1 survives (not parsed through a double)");
            Assert.AreEqual(0u, c.ChunkIndex, "omitted = 0");
            Assert.IsFalse(c.HasPixels);
            Assert.AreEqual(2u, c.RingSlot.Slot);
            Assert.AreEqual(14376960UL, c.RingSlot.Length);
            Assert.AreEqual(14376960L, c.ExpectedPixelBytes, "12 x 480 x 832 x 3");
            Assert.AreEqual(20.25, c.Timing.DenoiseMs);
        }

        [Test]
        public void DecodesTakeStartedAndTakeSaved()
        {
            var s = ServerMessage.FromJson("{\"takeStarted\": {\"name\": \"boss-fight\", \"path\": \"/srv/takes/boss-fight.mp4\"}}");
            Assert.AreEqual(ServerKind.TakeStarted, s.Kind);
            Assert.AreEqual("/srv/takes/boss-fight.mp4", s.TakeStarted.Path);
            var t = ServerMessage.FromJson("{\"takeSaved\": {\"name\": \"boss-fight\", \"path\": \"/srv/takes/boss-fight.mp4\", \"frames\": 45, "
                + "\"bytes\": \"6000000000\", \"durationS\": 2.8125}}").TakeSaved;
            Assert.AreEqual("boss-fight", t.Name);
            Assert.AreEqual(45u, t.Frames);
            Assert.AreEqual(6000000000UL, t.Bytes);
            Assert.AreEqual(2.8125, t.DurationS);
        }

        [Test]
        public void DecodesTheDecoderAndFullTakes()
        {
            var o = ServerMessage.FromJson("{\"opened\": {\"sessionId\": \"s-3\", \"width\": 832, \"height\": 480, \"decoder\": \"DECODER_TAE\"}}").Opened;
            Assert.AreEqual(FrameDecoder.Tae, o.Decoder, "the decoder the server chose");
            Assert.AreEqual(FrameDecoder.Unspecified, ServerMessage.FromJson("{\"opened\": {}}").Opened.Decoder, "a server without decoders");
            var s = ServerMessage.FromJson("{\"takeStarted\": {\"name\": \"hd\", \"path\": \"/srv/takes/hd.mp4\", \"quality\": \"TAKE_QUALITY_FULL\", "
                + "\"fullPath\": \"/srv/takes/hd.full.mp4\"}}").TakeStarted;
            Assert.AreEqual(TakeQuality.Full, s.Quality);
            Assert.AreEqual("/srv/takes/hd.full.mp4", s.FullPath);
            var t = ServerMessage.FromJson("{\"takeSaved\": {\"name\": \"hd\", \"path\": \"/srv/takes/hd.mp4\", \"frames\": 45, \"bytes\": \"6000000000\", "
                + "\"fullPath\": \"/srv/takes/hd.full.mp4\", \"fullBytes\": \"7000000000\"}}").TakeSaved;
            Assert.AreEqual("/srv/takes/hd.full.mp4", t.FullPath);
            Assert.AreEqual(7000000000UL, t.FullBytes);
        }

        [Test]
        public void EncodesTheDecoderAndTheTakeQuality()
        {
            Assert.AreEqual("{\"open\":{\"protocolVersion\":1,\"decoder\":\"DECODER_TAE\"}}", ClientMessage.Open(new OpenSession { Decoder = FrameDecoder.Tae }).ToJson());
            Assert.AreEqual("{\"startTake\":{\"name\":\"hd\",\"quality\":\"TAKE_QUALITY_FULL\"}}", ClientMessage.StartTakeMessage("hd", TakeQuality.Full).ToJson());
            Assert.AreEqual("{\"startTake\":{}}", ClientMessage.StartTakeMessage("", TakeQuality.Unspecified).ToJson(), "unspecified (live) is left out");
            Assert.AreEqual("DECODER_WAN", ProtoEnums.Name(FrameDecoder.Wan));
            Assert.AreEqual("TAKE_QUALITY_LIVE", ProtoEnums.Name(TakeQuality.Live));
        }

        [Test]
        public void IgnoresWhatANewerServerAdds()
        {
            var m = ServerMessage.FromJson("{\"futureKind\": {\"x\": [1, {\"y\": null}]}, \"cueAccepted\": {\"eventId\": \"f\", \"newField\": \"z\", \"queuePosition\": 1}}");
            Assert.AreEqual(ServerKind.CueAccepted, m.Kind);
            Assert.AreEqual(1u, m.CueAccepted.QueuePosition);
            Assert.AreEqual(Transport.Unspecified, ServerMessage.FromJson("{\"opened\": {\"transport\": \"TRANSPORT_QUANTUM\"}}").Opened.Transport,
                            "an unknown enum name reads as the default");
        }

        [Test]
        public void RejectsMalformedServerMessagesWithClearErrors()
        {
            Assert.Throws<JsonException>(() => ServerMessage.FromJson("{}"));
            Assert.Throws<JsonException>(() => ServerMessage.FromJson("{\"closed\": {}, \"stats\": {}}"), "two kinds of a oneof");
            Assert.Throws<JsonException>(() => ServerMessage.FromJson("{\"stats\": {\"paused\": 1}}"), "wrong type");
            var e = Assert.Throws<JsonException>(() => ServerMessage.FromJson("{\"chunk\": {\"numFrames\": 4294967296}}"));
            StringAssert.Contains("numFrames", e.Message);
        }

        [Test]
        public void EncodesClientMessagesAsTheGatewayParsesThem()
        {
            Assert.AreEqual("{\"open\":{\"protocolVersion\":1}}", ClientMessage.Open(new OpenSession()).ToJson());
            var open = new OpenSession { ClientName = "unity/Game", GlobalCaption = "Caf\u00e9 \"q\"", Seed = ulong.MaxValue,
                                         FrameFormat = FrameFormat.Rgba8, Transport = Transport.Inline, MaxChunksInFlight = 2 };
            Assert.AreEqual("{\"open\":{\"protocolVersion\":1,\"clientName\":\"unity/Game\",\"globalCaption\":\"Caf\u00e9 \\\"q\\\"\","
                + "\"seed\":\"18446744073709551615\",\"frameFormat\":\"FRAME_FORMAT_RGBA8\",\"transport\":\"TRANSPORT_INLINE\",\"maxChunksInFlight\":2}}",
                ClientMessage.Open(open).ToJson());
            var cue = new Cue { EventId = "boss", Prompt = "A dragon lands.", NumChunks = 2, Mode = CueMode.Cut };
            cue.Tags.Add("act2");
            Assert.AreEqual("{\"cue\":{\"eventId\":\"boss\",\"prompt\":\"A dragon lands.\",\"tags\":[\"act2\"],\"numChunks\":2,\"mode\":\"CUE_MODE_CUT\"}}",
                            ClientMessage.CueMessage(cue).ToJson());
            Assert.AreEqual("{\"ack\":{\"chunkSeq\":\"9007199254740993\"}}", ClientMessage.AckMessage(9007199254740993UL).ToJson());
            Assert.AreEqual("{\"pause\":{}}", ClientMessage.Pause().ToJson());
            Assert.AreEqual("{\"close\":{}}", ClientMessage.Close().ToJson());
        }

        [Test]
        public void EncodesTakes()
        {
            Assert.AreEqual("{\"startTake\":{\"name\":\"boss-fight\"}}", ClientMessage.StartTakeMessage("boss-fight").ToJson());
            Assert.AreEqual("{\"startTake\":{}}", ClientMessage.StartTakeMessage().ToJson(), "no name: the server picks one");
            Assert.AreEqual("{\"stopTake\":{}}", ClientMessage.StopTakeMessage().ToJson());
            var back = ClientMessage.FromJson("{\"start_take\": {\"name\": \"t1\"}}");
            Assert.AreEqual(ClientKind.StartTake, back.Kind, "proto field names read too");
            Assert.AreEqual("t1", back.AsStartTake.Name);
        }

        [Test]
        public void EnumNamesAreTheProtoNames()
        {
            Assert.AreEqual("FRAME_FORMAT_RGB8", ProtoEnums.Name(FrameFormat.Rgb8));
            Assert.AreEqual("TRANSPORT_SHARED_MEMORY", ProtoEnums.Name(Transport.SharedMemory));
            Assert.AreEqual("CUE_MODE_WAIT", ProtoEnums.Name(CueMode.Wait));
            Assert.AreEqual(4, ProtoEnums.Channels(FrameFormat.Rgba8));
            Assert.AreEqual(3, ProtoEnums.Channels(FrameFormat.Unspecified), "UNSPECIFIED is RGB8");
        }

        [Test]
        public void SnapshotPartsRoundTripAsBase64AndAssembleInOrder()
        {
            var m = ServerMessage.FromJson("{\"snapshot\": {\"data\": \"AP8B\", \"totalBytes\": \"5\", \"count\": 2, \"nextShotIndex\": 3}}");
            Assert.AreEqual(ServerKind.Snapshot, m.Kind);
            Assert.AreEqual(3, m.Snapshot.DataLength);
            Assert.AreEqual((byte)0xFF, m.Snapshot.Data[1]);
            var assembler = new SnapshotAssembler();
            Assert.IsTrue(assembler.Add(m.Snapshot) == null, "part 0 of 2: not complete yet");
            var whole = assembler.Add(new SnapshotPart { Data = new byte[] { 7, 8 }, TotalBytes = 5, Index = 1, Count = 2 });
            Assert.AreEqual("0,255,1,7,8", string.Join(",", whole));
            Assert.Throws<System.IO.InvalidDataException>(() => assembler.Add(new SnapshotPart { Data = new byte[] { 1 }, TotalBytes = 1, Index = 1, Count = 2 }),
                                                          "a part without its part 0");
            Assert.AreEqual("{\"snapshotPart\":{\"data\":\"AP8B\",\"totalBytes\":\"5\",\"index\":1}}",
                            ClientMessage.SnapshotPartMessage(new SnapshotPart { Data = new byte[] { 0, 255, 1 }, TotalBytes = 5, Index = 1 }).ToJson());
        }

        [Test]
        public void SnapshotRequestForkCutAtChunkAndCueLog()
        {
            Assert.AreEqual("{\"snapshot\":{\"waitForBoundary\":true}}", ClientMessage.SnapshotMessage(true).ToJson());
            Assert.AreEqual("{\"open\":{\"protocolVersion\":1,\"fork\":{\"sessionId\":\"s-1\"}}}",
                            ClientMessage.Open(new OpenSession { Fork = new Fork { SessionId = "s-1" } }).ToJson());
            Assert.AreEqual("{\"cue\":{\"prompt\":\"p\",\"mode\":\"CUE_MODE_CUT\",\"atChunk\":2}}",
                            ClientMessage.CueMessage(new Cue { Prompt = "p", Mode = CueMode.Cut, AtChunk = 2 }).ToJson());
            var log = ServerMessage.FromJson("{\"cueLog\": {\"globalCaption\": \"Sea.\", \"seed\": \"3\", \"firstShotIndex\": 1, \"entries\": ["
                + "{\"cue\": {\"prompt\": \"a\", \"numChunks\": 2}, \"shotIndex\": 1, \"chunks\": 2, \"finished\": true}]}}").CueLog;
            Assert.AreEqual(1, log.Entries.Count);
            Assert.AreEqual("a", log.Entries[0].Cue.Prompt);
            Assert.AreEqual(3UL, log.Seed);
            Assert.IsTrue(log.Entries[0].Finished);
            var r = ServerMessage.FromJson("{\"restored\": {\"nextShotIndex\": 2, \"storyFrames\": \"30\"}}").Restored;
            Assert.AreEqual(2u, r.NextShotIndex);
            Assert.AreEqual(30UL, r.StoryFrames);
        }
    }
}
