import Testing

@testable import FUSELowLevel

/// The pure state machine of an interruptible reply, in every ordering of
/// interrupt, cancel registration, cancel verdict and answer.
@Suite struct InterruptStateMachineTests {
    typealias Machine = InterruptStateMachine<String>

    private func isRunCancel(_ action: Machine.InterruptAction, _ expected: String) -> Bool {
        if case .runCancel(let c) = action { return c == expected }
        return false
    }

    private func isNone(_ action: Machine.InterruptAction) -> Bool {
        if case .none = action { return true }
        return false
    }

    @Test func startsArmed() {
        let m = Machine()
        #expect(m.state.description == "armed")
    }

    @Test func interruptBeforeCancelThenCancelRunsAtOnce() {
        var m = Machine()
        #expect(isNone(m.interruptArrived()))
        #expect(m.state.description == "interrupted")
        guard case .runCancel(let c) = m.cancelProvided("c1") else {
            Issue.record("expected runCancel")
            return
        }
        #expect(c == "c1")
        #expect(m.state.description == "cancelling")
        #expect(m.cancelFinished(cancelled: true) == .answerInterrupted)
        #expect(m.answered() == nil)
        #expect(m.state.description == "answered")
    }

    @Test func interruptBeforeCancelAndCancelDeclines() {
        var m = Machine()
        _ = m.interruptArrived()
        _ = m.cancelProvided("c1")
        #expect(m.cancelFinished(cancelled: false) == .none)
        #expect(m.state.description == "declined")
        // The work answers later.
        #expect(m.answered() == nil)
        #expect(m.state.description == "answered")
    }

    @Test func interruptAfterCancelRunsIt() {
        var m = Machine()
        guard case .stored(let replaced) = m.cancelProvided("c1") else {
            Issue.record("expected stored")
            return
        }
        #expect(replaced == nil)
        #expect(m.state.description == "cancelRegistered")
        #expect(isRunCancel(m.interruptArrived(), "c1"))
        #expect(m.cancelFinished(cancelled: true) == .answerInterrupted)
    }

    @Test func interruptAfterCancelThatDeclines() {
        var m = Machine()
        _ = m.cancelProvided("c1")
        #expect(isRunCancel(m.interruptArrived(), "c1"))
        #expect(m.cancelFinished(cancelled: false) == .none)
        #expect(m.state.description == "declined")
        // A second interrupt does not run anything again.
        #expect(isNone(m.interruptArrived()))
    }

    @Test func interruptAfterAnswerDoesNothing() {
        var m = Machine()
        _ = m.cancelProvided("c1")
        #expect(m.answered() == "c1")  // handed back to be dropped
        #expect(isNone(m.interruptArrived()))
        #expect(m.state.description == "answered")
    }

    @Test func cancelAfterAnswerIsDiscarded() {
        var m = Machine()
        _ = m.answered()
        guard case .discard(let c) = m.cancelProvided("late") else {
            Issue.record("expected discard")
            return
        }
        #expect(c == "late")
    }

    @Test func interruptBeforeArmedAnswerThenAnswer() {
        var m = Machine()
        _ = m.interruptArrived()
        #expect(m.answered() == nil)
        guard case .discard = m.cancelProvided("late") else {
            Issue.record("expected discard")
            return
        }
    }

    @Test func doubleInterruptBeforeCancel() {
        var m = Machine()
        #expect(isNone(m.interruptArrived()))
        #expect(isNone(m.interruptArrived()))
        #expect(m.state.description == "interrupted")
        guard case .runCancel = m.cancelProvided("c1") else {
            Issue.record("expected runCancel")
            return
        }
    }

    @Test func doubleInterruptWhileCancelling() {
        var m = Machine()
        _ = m.cancelProvided("c1")
        #expect(isRunCancel(m.interruptArrived(), "c1"))
        #expect(isNone(m.interruptArrived()))
        #expect(m.cancelFinished(cancelled: true) == .answerInterrupted)
    }

    @Test func replacingCancelBeforeInterruptRunsTheNewest() {
        var m = Machine()
        _ = m.cancelProvided("c1")
        guard case .stored(let replaced) = m.cancelProvided("c2") else {
            Issue.record("expected stored")
            return
        }
        #expect(replaced == "c1")
        #expect(isRunCancel(m.interruptArrived(), "c2"))
    }

    @Test func cancelAfterInterruptWasConsumedIsDiscarded() {
        var m = Machine()
        _ = m.cancelProvided("c1")
        _ = m.interruptArrived()
        guard case .discard = m.cancelProvided("c2") else {
            Issue.record("expected discard while cancelling")
            return
        }
        _ = m.cancelFinished(cancelled: false)
        guard case .discard = m.cancelProvided("c3") else {
            Issue.record("expected discard when declined")
            return
        }
    }

    @Test func verdictAfterAnswerIsIgnored() {
        var m = Machine()
        _ = m.cancelProvided("c1")
        _ = m.interruptArrived()
        _ = m.answered()  // the work answered while cancel ran
        #expect(m.cancelFinished(cancelled: true) == .none)
        #expect(m.cancelFinished(cancelled: false) == .none)
        #expect(m.state.description == "answered")
    }

    @Test func verdictWithoutCancellingIsIgnored() {
        var m = Machine()
        #expect(m.cancelFinished(cancelled: true) == .none)
        #expect(m.state.description == "armed")
    }
}
