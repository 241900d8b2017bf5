// Runs the package's NUnit tests (unity_plugin/com.shotstream.bridge/Tests, compiled against
// tests/unity/stubs/NUnitStub.cs) under mono, as Unity's Test Runner would: every public [Test] method of
// every public class, each on a fresh instance. Anything the Test Runner would not run as a plain test (a
// [Test] with parameters or a return value, a non-public one) fails here instead of being skipped.
//   mono NUnitRunner.exe ShotStream.Tests.dll  -> "PASS/FAIL Class.Method" lines, "N passed, M failed" last; exit 1 on failure
using System;
using System.Linq;
using System.Reflection;
using NUnit.Framework;

static class NUnitRunner
{
    static int Main(string[] args)
    {
        if (args.Length != 1) { Console.Error.WriteLine("usage: NUnitRunner.exe TESTS.dll"); return 2; }
        Assembly tests = Assembly.LoadFrom(args[0]);
        int passed = 0, failed = 0;
        const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        foreach (Type type in tests.GetTypes().OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            foreach (MethodInfo method in type.GetMethods(All).Where(m => m.IsDefined(typeof(TestAttribute), true)).OrderBy(m => m.Name, StringComparer.Ordinal))
            {
                string name = type.Name + "." + method.Name;
                try
                {
                    if (!type.IsPublic || !method.IsPublic || method.IsStatic || method.GetParameters().Length > 0 || method.ReturnType != typeof(void))
                        throw new InvalidOperationException("a [Test] must be a public void instance method without parameters in a public class");
                    object fixture = Activator.CreateInstance(type);
                    try { method.Invoke(fixture, null); }
                    catch (TargetInvocationException e) { throw e.InnerException; }
                    passed++;
                    Console.WriteLine("PASS " + name);
                }
                catch (Exception e)
                {
                    failed++;
                    Console.WriteLine("FAIL " + name + ": " + e.GetType().Name + ": " + e.Message);
                }
            }
        }
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 && passed > 0 ? 0 : 1;
    }
}
