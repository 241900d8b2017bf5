using System.Runtime.CompilerServices;

// The Unity-layer tests (tests/unity/UnityLayerTests.cs) drive internal seams (e.g. the client's send hook).
[assembly: InternalsVisibleTo("UnityLayerTests")]
// tests/unity/ScreenBench.cs hands chunks to the client as its receive loop does.
[assembly: InternalsVisibleTo("ScreenBench")]
// tests/unity/TimelineTests.cs plays the service for the Timeline track through the same seams.
[assembly: InternalsVisibleTo("TimelineTests")]
// tests/unity/SampleTests.cs plays the sample's cutscene against a simulated service through the same seams.
[assembly: InternalsVisibleTo("SampleTests")]
