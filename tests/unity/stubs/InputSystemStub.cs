// A stub of ONLY the Input System package (com.unity.inputsystem 1.x) APIs the package's sample uses under
// #if ENABLE_INPUT_SYSTEM: Keyboard.current and its digit/letter keys' wasPressedThisFrame. Compiled to
// Unity.InputSystem.dll by tests/test_unity_package.py. C# 7.2.

namespace UnityEngine.InputSystem.Controls
{
    public class ButtonControl
    {
        /// <summary>Test hook (not Unity API): pressed this frame.</summary>
        public bool PressedForTests;
        public bool wasPressedThisFrame { get { return PressedForTests; } }
    }

    public class KeyControl : ButtonControl { }
}

namespace UnityEngine.InputSystem
{
    using UnityEngine.InputSystem.Controls;

    public class Keyboard
    {
        /// <summary>Test hook (not Unity API): the keyboard Keyboard.current returns (null: none connected).</summary>
        public static Keyboard CurrentForTests;
        public static Keyboard current { get { return CurrentForTests; } }
        public KeyControl digit1Key { get; } = new KeyControl();
        public KeyControl digit2Key { get; } = new KeyControl();
        public KeyControl digit3Key { get; } = new KeyControl();
        public KeyControl tKey { get; } = new KeyControl();
        public KeyControl cKey { get; } = new KeyControl();
    }
}
