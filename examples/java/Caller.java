// One Live conversation with livegate over gRPC from Java (grpc-java): a text turn, GetSession while the session
// is live, and a function call answered by the caller. A sketch to copy from, not built by the repository: see
// docs/other-languages.md for generating the classes it imports (protoc's java + protoc-gen-grpc-java) and
// for its dependencies.
//
//   java Caller 127.0.0.1:50051

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import com.google.rpc.ErrorInfo;
import dev.livegate.v1.BidiGenerateContentClientContent;
import dev.livegate.v1.BidiGenerateContentServerContent;
import dev.livegate.v1.BidiGenerateContentSetup;
import dev.livegate.v1.BidiGenerateContentToolResponse;
import dev.livegate.v1.ClientMessage;
import dev.livegate.v1.Content;
import dev.livegate.v1.FunctionCall;
import dev.livegate.v1.FunctionDeclaration;
import dev.livegate.v1.FunctionResponse;
import dev.livegate.v1.GenerationConfig;
import dev.livegate.v1.GetSessionRequest;
import dev.livegate.v1.LiveGatewayGrpc;
import dev.livegate.v1.Part;
import dev.livegate.v1.ServerMessage;
import dev.livegate.v1.Session;
import dev.livegate.v1.SessionInfo;
import dev.livegate.v1.Tool;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

public final class Caller {
  private static final String MODEL = "gemini-live-2.5-flash";

  public static void main(String[] args) throws Exception {
    String target = args.length > 0 ? args[0] : "127.0.0.1:50051";
    ManagedChannel channel = Grpc.newChannelBuilder(target, InsecureChannelCredentials.create()).build();
    try {
      run(channel);
      System.out.println("all done");
    } catch (StatusRuntimeException e) {
      System.err.println("caller failed: " + describe(e));
      System.exit(1);
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  static void run(ManagedChannel channel) throws Exception {
    LiveGatewayGrpc.LiveGatewayStub live = LiveGatewayGrpc.newStub(channel);
    LiveGatewayGrpc.LiveGatewayBlockingStub admin = LiveGatewayGrpc.newBlockingStub(channel);

    // The deadline covers the whole stream: a real conversation needs a longer one, or none.
    Responses responses = new Responses();
    StreamObserver<ClientMessage> requests = live.withDeadlineAfter(30, TimeUnit.SECONDS).connect(responses);

    // 1. setup (first message) -> session (seq 0) -> setup_complete (seq 1)
    requests.onNext(ClientMessage.newBuilder()
        .setSetup(BidiGenerateContentSetup.newBuilder()
            .setModel(MODEL)
            .setGenerationConfig(GenerationConfig.newBuilder()
                .addResponseModalities(GenerationConfig.Modality.TEXT))
            .addTools(Tool.newBuilder()
                .addFunctionDeclarations(FunctionDeclaration.newBuilder().setName("turn_on_the_lights"))))
        .build());
    // also keep session.getReattachToken() and the last seq, to reattach
    SessionInfo session = responses.expect(ServerMessage.MessageCase.SESSION).getSession();
    responses.expect(ServerMessage.MessageCase.SETUP_COMPLETE);
    System.out.println("session " + session.getSessionId());

    // 2. a text turn
    requests.onNext(userText("Hello"));
    System.out.println("< " + readTurn(responses, requests)); // You said: "Hello"

    // 3. GetSession while the session is live
    Session info = admin.withDeadlineAfter(5, TimeUnit.SECONDS)
        .getSession(GetSessionRequest.newBuilder().setSessionId(session.getSessionId()).build());
    System.out.println("state=" + info.getState() + " server_messages=" + info.getCounters().getServerMessages());

    // 4. a function call: readTurn answers the tool_call, then returns the model's final text
    requests.onNext(userText("Turn on the lights please"));
    System.out.println("< " + readTurn(responses, requests)); // turn_on_the_lights returned {"result":"ok"}.

    // 5. half-close, then read until the gateway ends the stream with OK
    requests.onCompleted();
    while (responses.next() != null) {
      // nothing more is expected
    }
  }

  static ClientMessage userText(String text) {
    return ClientMessage.newBuilder()
        .setClientContent(BidiGenerateContentClientContent.newBuilder()
            .addTurns(Content.newBuilder().setRole("user").addParts(Part.newBuilder().setText(text)))
            .setTurnComplete(true))
        .build();
  }

  /** Reads one model turn until server_content.turn_complete, answering tool calls on the way. */
  static String readTurn(Responses responses, StreamObserver<ClientMessage> requests) throws Exception {
    StringBuilder text = new StringBuilder();
    for (ServerMessage msg = responses.next(); msg != null; msg = responses.next()) {
      switch (msg.getMessageCase()) {
        case TOOL_CALL -> {
          BidiGenerateContentToolResponse.Builder reply = BidiGenerateContentToolResponse.newBuilder();
          for (FunctionCall call : msg.getToolCall().getFunctionCallsList()) {
            reply.addFunctionResponses(FunctionResponse.newBuilder()
                .setId(call.getId())
                .setName(call.getName())
                .setResponse(Struct.newBuilder()
                    .putFields("result", Value.newBuilder().setStringValue("ok").build())));
          }
          requests.onNext(ClientMessage.newBuilder().setToolResponse(reply).build());
        }
        case SERVER_CONTENT -> {
          BidiGenerateContentServerContent content = msg.getServerContent();
          for (Part part : content.getModelTurn().getPartsList()) {
            if (!part.getThought()) {
              text.append(part.getText());
            }
          }
          if (content.getTurnComplete()) {
            return text.toString();
          }
        }
        default -> {
          // usage_metadata alone, session_resumption_update, upstream_renewed, drain, ...
        }
      }
    }
    throw new IllegalStateException("the stream ended in the middle of a turn");
  }

  /** The response stream, read pull-style: grpc-java delivers it on its own threads. */
  static final class Responses implements StreamObserver<ServerMessage> {
    private static final Object END = new Object();
    private final BlockingQueue<Object> queue = new LinkedBlockingQueue<>();

    @Override
    public void onNext(ServerMessage msg) {
      queue.add(msg);
    }

    @Override
    public void onError(Throwable t) {
      queue.add(t);
    }

    @Override
    public void onCompleted() {
      queue.add(END);
    }

    /** The next message; null once the gateway ended the stream with OK; throws its error status. */
    ServerMessage next() throws Exception {
      Object item = queue.poll(30, TimeUnit.SECONDS);
      if (item == null) {
        throw new TimeoutException("no server message within 30 s");
      }
      if (item == END) {
        return null;
      }
      if (item instanceof Exception e) {
        throw e; // a StatusRuntimeException carrying the gateway's status and trailers
      }
      if (item instanceof Throwable t) {
        throw new RuntimeException(t);
      }
      return (ServerMessage) item;
    }

    ServerMessage expect(ServerMessage.MessageCase kind) throws Exception {
      ServerMessage msg = next();
      if (msg == null || msg.getMessageCase() != kind) {
        throw new IllegalStateException("expected " + kind + ", got " + (msg == null ? "the end" : msg.getMessageCase()));
      }
      return msg;
    }
  }

  /** A gRPC error with the gateway's google.rpc.ErrorInfo. */
  static String describe(StatusRuntimeException e) throws InvalidProtocolBufferException {
    StringBuilder out = new StringBuilder("gRPC error " + e.getStatus().getCode() + ": " + e.getStatus().getDescription());
    com.google.rpc.Status status = StatusProto.fromThrowable(e);
    if (status != null) {
      for (Any detail : status.getDetailsList()) {
        if (detail.is(ErrorInfo.class)) {
          ErrorInfo info = detail.unpack(ErrorInfo.class);
          out.append("\n  ErrorInfo reason=").append(info.getReason())
              .append(" domain=").append(info.getDomain())
              .append(" metadata=").append(info.getMetadataMap());
        }
      }
    }
    return out.toString();
  }
}
