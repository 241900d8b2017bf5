using System.Runtime.CompilerServices;

// The Unity-layer tests (tests/unity/UnityLayerTests.cs) drive internal seams (e.g. the client's send hook).
[assembly: InternalsVisibleTo("UnityLayerTests")]
