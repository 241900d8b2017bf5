// A stub of ONLY the NUnit 3 API that unity_plugin/com.shotstream.bridge/Tests uses, with NUnit's
// overloads and semantics (Unity's Test Framework ships NUnit 3.5 as nunit.framework.dll). Compiled to
// nunit.framework.dll by tests/test_unity_package.py; the package's tests compile against it and
// tests/unity/NUnitRunner.cs runs them, so a test using an NUnit API missing here fails the build (add it
// here only with NUnit's own signature). C# 7.2.
//   AreEqual: numbers compare by value whatever their types, collections element by element, the rest
//   with Equals (NUnit's default equality). Throws<T>: exactly T, not a subclass (as in NUnit).
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;

namespace NUnit.Framework
{
    [AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = true)]
    public class TestFixtureAttribute : Attribute { }

    [AttributeUsage(AttributeTargets.Method, AllowMultiple = false, Inherited = true)]
    public class TestAttribute : Attribute { }

    public delegate void TestDelegate();

    public class AssertionException : Exception { public AssertionException(string message) : base(message) { } }

    public abstract class Assert
    {
        public static void AreEqual(object expected, object actual) { AreEqual(expected, actual, null); }
        public static void AreEqual(object expected, object actual, string message, params object[] args)
        {
            if (!Equal(expected, actual)) Fail(Format(message, args) + "Expected: " + Show(expected) + "\n  But was:  " + Show(actual));
        }

        public static void AreEqual(double expected, double actual, double delta, string message, params object[] args)
        {
            if (!(Math.Abs(expected - actual) <= delta))
                Fail(Format(message, args) + "Expected: " + Show(expected) + " +/- " + Show(delta) + "\n  But was:  " + Show(actual));
        }

        public static void AreSame(object expected, object actual) { AreSame(expected, actual, null); }
        public static void AreSame(object expected, object actual, string message, params object[] args)
        {
            if (!ReferenceEquals(expected, actual)) Fail(Format(message, args) + "Expected: same as " + Show(expected) + "\n  But was:  " + Show(actual));
        }

        public static void IsTrue(bool condition) { IsTrue(condition, null); }
        public static void IsTrue(bool condition, string message, params object[] args) { if (!condition) Fail(Format(message, args) + "Expected: True\n  But was:  False"); }
        public static void IsFalse(bool condition) { IsFalse(condition, null); }
        public static void IsFalse(bool condition, string message, params object[] args) { if (condition) Fail(Format(message, args) + "Expected: False\n  But was:  True"); }

        public static TActual Throws<TActual>(TestDelegate code) where TActual : Exception { return Throws<TActual>(code, null); }
        public static TActual Throws<TActual>(TestDelegate code, string message, params object[] args) where TActual : Exception
        {
            Exception caught = null;
            try { code(); }
            catch (Exception e) { caught = e; }
            if (caught != null && caught.GetType() == typeof(TActual)) return (TActual)caught;
            Fail(Format(message, args) + "Expected: " + typeof(TActual).FullName + "\n  But was:  "
                 + (caught == null ? "no exception" : caught.GetType().FullName + ": " + caught.Message));
            return null;
        }

        public static void Fail(string message, params object[] args)
        {
            throw new AssertionException(args != null && args.Length > 0 ? string.Format(CultureInfo.InvariantCulture, message, args) : message);
        }

        // The caller's message, as NUnit prints it before the expected/actual lines.
        internal static string Format(string message, object[] args)
        {
            if (message == null) return "";
            return (args != null && args.Length > 0 ? string.Format(CultureInfo.InvariantCulture, message, args) : message) + "\n  ";
        }

        static string Show(object o)
        {
            if (o == null) return "null";
            if (o is string) return "\"" + o + "\"";
            if (o is IEnumerable)
            {
                var parts = new List<string>();
                foreach (var x in (IEnumerable)o) { if (parts.Count == 16) { parts.Add("..."); break; } parts.Add(Show(x)); }
                return "< " + string.Join(", ", parts) + " >";
            }
            return Convert.ToString(o, CultureInfo.InvariantCulture);
        }

        static bool Equal(object a, object b)
        {
            if (a == null || b == null) return a == null && b == null;
            if (IsNumber(a) && IsNumber(b))
            {
                if (a is double || a is float || b is double || b is float) return Convert.ToDouble(a).Equals(Convert.ToDouble(b));
                return Convert.ToDecimal(a) == Convert.ToDecimal(b);
            }
            if (!(a is string) && !(b is string) && a is IEnumerable && b is IEnumerable)
            {
                IEnumerator x = ((IEnumerable)a).GetEnumerator(), y = ((IEnumerable)b).GetEnumerator();
                while (true)
                {
                    bool more = x.MoveNext();
                    if (more != y.MoveNext()) return false;
                    if (!more) return true;
                    if (!Equal(x.Current, y.Current)) return false;
                }
            }
            return a.Equals(b);
        }

        static bool IsNumber(object o)
        {
            if (o.GetType().IsEnum) return false;
            switch (Type.GetTypeCode(o.GetType()))
            {
                case TypeCode.SByte: case TypeCode.Byte: case TypeCode.Int16: case TypeCode.UInt16: case TypeCode.Int32: case TypeCode.UInt32:
                case TypeCode.Int64: case TypeCode.UInt64: case TypeCode.Single: case TypeCode.Double: case TypeCode.Decimal:
                    return true;
                default: return false;
            }
        }
    }

    public abstract class StringAssert
    {
        public static void Contains(string expected, string actual) { Contains(expected, actual, null); }
        public static void Contains(string expected, string actual, string message, params object[] args)
        {
            if (actual == null || !actual.Contains(expected))
                Assert.Fail(Assert.Format(message, args) + "Expected: String containing \"" + expected + "\"\n  But was:  \"" + actual + "\"");
        }
    }
}
