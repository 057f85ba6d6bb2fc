/// A reference to state that only the group's lock may touch.
///
/// Handles (`Member`, `Reader`, `Waiting`) keep such a reference for O(1)
/// access, and are Sendable; the state itself is not. Reading it requires an
/// `inout GroupState`, which only exists inside the group lock's `withLock`,
/// so an unlocked access does not compile.
struct Guarded<Value: AnyObject>: @unchecked Sendable {
    private let value: Value

    init(_ value: Value) { self.value = value }

    func callAsFunction(_ lockedState: inout GroupState) -> Value { value }

    /// Identity comparison needs no lock.
    func isSame(as other: Value) -> Bool { value === other }
}
